# Sourced by the benchmark shell scripts (`source "$(dirname "$0")/../common.sh"`): it moves to the repository
# root, where every path in them starts, and holds what they share.

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# bf16cpu where the CPU has bf16 instructions (AVX-512 BF16 or AMX), else avx2cpu: the suffix of recipe runs' result
# names (seeds.sh, cpu_precision.sh).
cpu_kind() {
  if grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo; then echo bf16cpu; else echo avx2cpu; fi
}
