"""spark-submit's main file for the prep stage (the packages come in --py-files)."""

from jobs.prep import main

if __name__ == "__main__":
    main()
