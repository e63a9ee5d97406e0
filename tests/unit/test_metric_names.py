"""MLflow names: one chart section per kind of number (tracking/metric_names.py)."""

from gen_platform.tracking.metric_names import SECTIONS, epoch_metric, evaluation_metric, search_metric


def test_epoch_records_go_to_train_and_val():
    assert epoch_metric("val_neg_elbo") == "val/neg_elbo" and epoch_metric("val_fd") == "val/fd"
    assert epoch_metric("train_d_loss") == "train/d_loss"
    assert epoch_metric("epoch_seconds") == "train/epoch_seconds"  # bookkeeping of training
    assert epoch_metric("system/gpu_0_memory_usage_megabytes") == "system/gpu_0_memory_usage_megabytes"


def test_evaluation_scores_go_to_eval_except_the_curves_last_value():
    assert evaluation_metric("fd") == "eval/fd" and evaluation_metric("test_neg_elbo") == "eval/test_neg_elbo"
    assert evaluation_metric("val_neg_elbo") == "val/neg_elbo"  # the curve's own name: its history is kept


def test_every_name_falls_in_a_section():
    names = [epoch_metric("train_loss"), evaluation_metric("nll"), search_metric("trials_finished"),
             epoch_metric("val_bce")]
    assert {name.split("/", 1)[0] for name in names} <= set(SECTIONS)
