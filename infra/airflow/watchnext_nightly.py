"""The nightly retraining as an Airflow DAG: one task per step of night D, in order.

    prep >> train >> recall >> evaluate >> publish, each `infra/nightly.sh STEP {{ ds }}`

the same steps as the Kubernetes CronJob (infra/k8s/cronjob-nightly.yaml). Airflow's
`{{ ds }}` is the run's logical date, the start of the interval the run covers: the run of
"0 2 * * *" that starts at 02:00 UTC after day D has ended has `ds` = D, the night's date.

catchup with max_active_runs=1 and depends_on_past: missed nights run one after the other,
oldest first, and a night waits for the previous one (it warm-starts from it).

The workers need the repository (or the watchnext image, infra/Dockerfile) at WATCHNEXT_HOME,
and in their environment what infra/nightly.sh reads: WATCHNEXT_DATA, WATCHNEXT_ROOT,
SPARK_MASTER, RAY_ADDRESS (and optionally WATCHNEXT_SET, SPARK_SUBMIT_OPTS_EXTRA).
"""

import datetime as dt

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator

WATCHNEXT_HOME = "/opt/watchnext"

default_args = {
    "owner": "watchnext",
    "depends_on_past": True,
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=15),
}

with DAG(
    dag_id="watchnext_nightly",
    description="Retrain on the window of days ending D; recall/ and i2i/ tables for run_date=D",
    schedule="0 2 * * *",
    # the first night to run: with catchup, every night since then runs, in order
    start_date=dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc),
    catchup=True,
    max_active_runs=1,
    default_args=default_args,
    tags=["watchnext"],
) as dag:
    prep = BashOperator(task_id="prep", bash_command="infra/nightly.sh prep {{ ds }}", cwd=WATCHNEXT_HOME)
    train = BashOperator(task_id="train", bash_command="infra/nightly.sh train {{ ds }}", cwd=WATCHNEXT_HOME)
    recall = BashOperator(task_id="recall", bash_command="infra/nightly.sh recall {{ ds }}", cwd=WATCHNEXT_HOME)
    evaluate = BashOperator(task_id="evaluate", bash_command="infra/nightly.sh evaluate {{ ds }}", cwd=WATCHNEXT_HOME)
    publish = BashOperator(task_id="publish", bash_command="infra/nightly.sh publish {{ ds }}", cwd=WATCHNEXT_HOME)

    prep >> train >> recall >> evaluate >> publish
