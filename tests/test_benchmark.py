"""The benchmark runs the training loop's compiled functions at a tiny size and reports every field."""

import dataclasses
import json
import math
import statistics
from pathlib import Path

import pytest

from helpers import SMALL
from jaxrec.benchmark import format_report, run_benchmark
from jaxrec.config import BenchmarkOptions, Config
from jaxrec.errors import InputError
from jaxrec.runtime.host import peak_host_memory_mb

TINY = BenchmarkOptions(image_shape=(8, 8, 3), num_classes=4, train_examples=48, eval_examples=20,
                        windows=2, calls_per_window=1, warmup_calls=1, matmul_size=64)

FIELDS = {"model", "param_count", "image_shape", "num_classes", "batch_size", "eval_batch_size", "steps_per_call",
          "augment", "train_images_per_second", "eval_images_per_second", "eval_to_train_ratio",
          "train_window_seconds", "eval_window_seconds", "train_compile_seconds", "eval_compile_seconds",
          "train_flops_per_image", "eval_flops_per_image", "train_flops_per_second", "eval_flops_per_second",
          "matmul_peak_flops_per_second", "train_fraction_of_peak", "eval_fraction_of_peak",
          "peak_host_memory_mb", "platform", "device_kind", "num_devices", "versions", "date", "seeds_per_program",
          "model_axis"}


@pytest.mark.slow
@pytest.mark.parametrize("num_devices,steps,models", [(1, 3, 1), (2, 1, 1), (2, 2, 3)])
def test_benchmark_emits_every_field_with_sane_values(num_devices, steps, models):
    config = Config(**SMALL, batch_size=8, eval_batch_size=6, steps_per_call=steps, num_devices=num_devices)
    options = dataclasses.replace(TINY, seeds_per_program=models)
    result = run_benchmark(config, options)
    assert FIELDS <= set(result)
    json.dumps(result)  # --json must be able to print it
    assert result["num_devices"] == num_devices and result["steps_per_call"] == steps
    assert result["seeds_per_program"] == models
    assert result["platform"] == "cpu" and result["device_kind"]
    assert result["param_count"] > 0
    for name in ("train_images_per_second", "eval_images_per_second", "train_flops_per_second",
                 "matmul_peak_flops_per_second", "train_fraction_of_peak", "peak_host_memory_mb"):
        assert math.isfinite(result[name]) and result[name] > 0, name
    assert len(result["train_window_seconds"]) == len(result["eval_window_seconds"]) == TINY.windows
    assert result["train_compile_seconds"] > 0 and result["eval_compile_seconds"] > 0
    # A training step is a forward and a backward pass: it costs more than evaluating one image.
    assert result["train_flops_per_image"] > 1.5 * result["eval_flops_per_image"] > 0
    # The reported rate is the images of a window over its (median) time.
    window_images = TINY.calls_per_window * steps * config.batch_size * models  # every model's images
    assert window_images / result["train_images_per_second"] == pytest.approx(
        statistics.median(result["train_window_seconds"]))
    assert "images/s" in format_report(result)


@pytest.mark.slow
def test_flops_per_image_do_not_depend_on_steps_per_call_or_devices():
    config = Config(**SMALL, batch_size=8, eval_batch_size=8, num_devices=1, steps_per_call=1)
    one = run_benchmark(config, TINY)
    more = run_benchmark(config.replace(steps_per_call=2, num_devices=2), TINY)
    assert more["train_flops_per_image"] == pytest.approx(one["train_flops_per_image"], rel=0.05)
    assert more["eval_flops_per_image"] == pytest.approx(one["eval_flops_per_image"], rel=0.05)


def test_peak_host_memory_is_megabytes_of_this_process():
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("no /proc/self/status to compare with on this platform")
    kib = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
    assert peak_host_memory_mb() == pytest.approx(kib / 1024, rel=0.05)


def test_benchmark_refuses_too_little_data():
    with pytest.raises(InputError, match="train_examples"):
        run_benchmark(Config(**SMALL, batch_size=64, num_devices=1), TINY)


def test_a_long_unrolled_loop_is_warned_about_before_compiling(caplog):
    from jaxrec.runtime.setup import LONG_UNROLLED_LOOP, warn_if_long_unrolled_loop

    with caplog.at_level("WARNING", logger="jaxrec"):
        warn_if_long_unrolled_loop(Config(steps_per_call=LONG_UNROLLED_LOOP + 1, steps_loop="unrolled"))
        warn_if_long_unrolled_loop(Config(steps_per_call=LONG_UNROLLED_LOOP, steps_loop="unrolled"))
        warn_if_long_unrolled_loop(Config(steps_per_call=500, steps_loop="rolled"))
    (record,) = caplog.records
    assert f"--steps_per_call {LONG_UNROLLED_LOOP + 1} with the unrolled loop" in record.getMessage()
    assert "compiling takes minutes" in record.getMessage()
