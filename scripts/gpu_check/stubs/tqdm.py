"""A no-op stand-in for tqdm. scripts/gpu_check.sh puts this folder on PYTHONPATH only when tqdm is
not installed: `padbench run` and `padbench recommend` import it for a progress bar and nothing else."""


class tqdm:  # noqa: N801 (tqdm's own name)
    def __init__(self, iterable=None, *args, **kwargs):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else ())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_description(self, *args, **kwargs):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def update(self, n=1):
        pass

    def refresh(self):
        pass

    def close(self):
        pass

    @staticmethod
    def write(text, *args, **kwargs):
        print(text)
