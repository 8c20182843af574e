from tacoreservice.cli import main

main()
