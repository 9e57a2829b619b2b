from nertune.training.signals import exit_at_once

exit_at_once()  # before the command's imports: Ctrl-C / SIGTERM stop `python -m nertune` from its first moment
from nertune.cli import main  # noqa: E402

main()
