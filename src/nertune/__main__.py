from nertune.cli import main

main()
