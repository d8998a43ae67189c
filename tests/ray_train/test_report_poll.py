"""The driver has Ray Train's controller collect the workers' epoch reports often enough that
short epochs do not wait for it."""

from ray.train.v2._internal.constants import DEFAULT_HEALTH_CHECK_INTERVAL_S, ENV_VARS_TO_PROPAGATE

from ray_train.trainer import REPORT_POLL_ENV, REPORT_POLL_SECONDS, poll_reports_often


def test_the_controller_polls_four_times_a_second_by_default():
    environ: dict[str, str] = {}
    poll_reports_often(environ)
    assert environ == {REPORT_POLL_ENV: "0.25"}
    assert float(REPORT_POLL_SECONDS) < DEFAULT_HEALTH_CHECK_INTERVAL_S


def test_an_interval_the_user_set_is_kept():
    environ = {REPORT_POLL_ENV: "5"}
    poll_reports_often(environ)
    assert environ == {REPORT_POLL_ENV: "5"}


def test_ray_train_passes_the_setting_from_the_driver_to_its_controller():
    assert REPORT_POLL_ENV in ENV_VARS_TO_PROPAGATE
