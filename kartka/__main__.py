from kartka.cli import main

main()
