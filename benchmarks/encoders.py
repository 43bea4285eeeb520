"""asv benchmarks of one transformer-encoder batch per strategy x distribution x device.

* `Inference` / `Training`: ``time_step`` (one batch, CUDA synchronised inside
  ``Prepared.step``), ``peakmem_step`` (CPU: the whole process's peak RSS while one batch
  runs, torch and model included) and ``track_cuda_peak_bytes`` (CUDA: ``max_memory_allocated``
  over one batch, weights and batch included).
* `InferenceMetrics` / `TrainingMetrics`: derived numbers measured once per mode in a
  shared ``setup_cache`` (see ``common.metrics_cache``): real tokens/s, speedup over
  ``padded`` timed in the same process, efficiency (useful FLOP/s over the machine's own
  measured matmul FLOP/s), forward max relative error and (training) parameter-gradient
  relative error against the float64 reference, and ``track_peak_mem_bytes``: one batch's peak
  above what was resident before it, the ``peak_mem_bytes`` of `padbench run` (bytes).
* `NestedFastpath`: 1 when ``nested_fastpath`` really took the nested path, else 0.
* `Lengths`: the padding ratio and real-token count of each distribution's batch.

Unsupported combinations are skipped in ``setup`` (``SkipNotImplemented``).
"""

from __future__ import annotations

from .common import (
    DEVICES,
    DISTRIBUTIONS,
    EncoderBenchmark,
    MetricsBenchmark,
    SkipNotImplemented,
    metrics_cache,
    name_for_model,
    reset_peak_rss,
)


class _Step(EncoderBenchmark):
    # A single step can take one of two times, and which one dominates differs from process
    # to process; so short steps are averaged over `sample_time` per sample, and more samples
    # are taken (docs/asv.md, repeatability).
    number = 0
    sample_time = 0.2
    repeat = (5, 20, 20.0)
    warmup_time = 0.3  # on top of setup's warm-up steps (asv --quick sets 0)
    min_run_count = 1

    def time_step(self, cache, strategy, distribution, device):
        self.prep.step()


class _PeakMem(EncoderBenchmark):
    devices_here = ("cpu",)

    def setup(self, cache, strategy, distribution, device):
        super().setup(cache, strategy, distribution, device)
        # The warm-up steps have run; reset the high-water mark so that asv's reading is the
        # process's peak RSS while one batch runs (torch, model and batch included).
        reset_peak_rss()

    def peakmem_step(self, cache, strategy, distribution, device):
        self.prep.step()


class _CudaMem(EncoderBenchmark):
    devices_here = ("cuda",)

    def track_cuda_peak_bytes(self, cache, strategy, distribution, device):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.prep.step()
        return torch.cuda.max_memory_allocated()

    track_cuda_peak_bytes.unit = "bytes"


class Inference(_Step):
    mode = "inference"


class InferenceMemory(_PeakMem):
    mode = "inference"


class InferenceCudaMemory(_CudaMem):
    mode = "inference"


class Training(_Step):
    mode = "training"


class TrainingMemory(_PeakMem):
    mode = "training"


class TrainingCudaMemory(_CudaMem):
    mode = "training"


class _InferenceCache(MetricsBenchmark):
    mode = "inference"

    def setup_cache(self):
        return metrics_cache("inference")

    setup_cache.timeout = 1800


class _TrainingCache(MetricsBenchmark):
    mode = "training"

    def setup_cache(self):
        return metrics_cache("training")

    setup_cache.timeout = 1800


class _Metrics:
    def track_tokens_per_s(self, cache, strategy, distribution, device):
        return self.value("tokens_per_s")

    track_tokens_per_s.unit = "tokens/s"

    def track_speedup_vs_padded(self, cache, strategy, distribution, device):
        return self.value("speedup")

    track_speedup_vs_padded.unit = "x padded"

    def track_efficiency(self, cache, strategy, distribution, device):
        return self.value("efficiency")

    track_efficiency.unit = "fraction of matmul peak"

    def track_peak_mem_bytes(self, cache, strategy, distribution, device):
        """One batch's peak memory above what was resident before it, as `padbench run` records it."""
        return self.value("peak_mem_bytes")

    track_peak_mem_bytes.unit = "bytes"

    def track_max_rel_err(self, cache, strategy, distribution, device):
        return self.value("max_rel_err")

    track_max_rel_err.unit = "relative error"

    def track_pad_checks(self, cache, strategy, distribution, device):
        """1 when noise in the pads changes nothing and an empty sequence gives no NaN."""
        inv, nan_free = self.rec.get("pad_invariant"), self.rec.get("nan_free")
        if inv is None or nan_free is None:
            raise SkipNotImplemented("pad checks not recorded")
        return float(bool(inv) and bool(nan_free))

    track_pad_checks.unit = "passed (1) / failed (0)"


class InferenceMetrics(_Metrics, _InferenceCache):
    pass


class TrainingMetrics(_Metrics, _TrainingCache):
    def track_grad_rel_err(self, cache, strategy, distribution, device):
        return self.value("grad_rel_err")

    track_grad_rel_err.unit = "relative error"


class NestedFastpath(_InferenceCache):
    """1.0 when nn.TransformerEncoder's nested fast path was really taken, else 0.0."""

    param_names = ("distribution", "device")
    params = (DISTRIBUTIONS, DEVICES)

    def setup(self, cache, distribution, device):
        super().setup(cache, "nested_fastpath", distribution, device)

    def track_fastpath_taken(self, cache, distribution, device):
        return self.value("fastpath_taken")

    track_fastpath_taken.unit = "taken (1) / fell back (0)"


class Lengths(_InferenceCache):
    """The batch each distribution gives (same lengths for every strategy and device)."""

    param_names = ("distribution",)
    params = (DISTRIBUTIONS,)

    def setup(self, cache, distribution):
        recs = [r for (s, d, dev), r in cache["cases"].items() if d == distribution and "padding_ratio" in r]
        if not recs:
            raise SkipNotImplemented("no measured case for this distribution")
        self.rec = recs[0]

    def track_padding_ratio(self, cache, distribution):
        return self.value("padding_ratio")

    track_padding_ratio.unit = "fraction"

    def track_num_tokens(self, cache, distribution):
        return self.value("num_tokens")

    track_num_tokens.unit = "tokens"

    def track_batch_size(self, cache, distribution):
        return self.value("batch_size")

    track_batch_size.unit = "sequences"

    def track_max_len(self, cache, distribution):
        return self.value("max_len")

    track_max_len.unit = "tokens"


name_for_model(globals())  # PADBENCH_ASV_MODEL other than spec: its own series
