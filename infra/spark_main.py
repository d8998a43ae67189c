"""spark-submit's main file for any watchnext command: the arguments after it are the CLI's.

    spark-submit [options] infra/spark_main.py prep --data DATA_DIR --out RUN_DIR
    spark-submit [options] infra/spark_main.py nightly --step prep --date D --data DATA_DIR --root ROOT

The packages come with --py-files (infra/spark-submit.sh) or are installed in the image
(infra/Dockerfile, where this file is local:///opt/watchnext/infra/spark_main.py). The
SparkSession takes spark-submit's master and memory settings (core/spark_session.py).
"""

import sys

from watchnext.cli import main

if __name__ == "__main__":
    sys.exit(main())
