"""Optuna's NSGA-II sampler in a form Ray Tune can save: Tune pickles its searcher, sampler
included, into the experiment folder (for --resume), and Optuna's genetic samplers hold a
thread lock, which cannot be pickled. The lock is dropped on saving and made anew on loading."""
from __future__ import annotations

import threading

import optuna


class PicklableNSGAIISampler(optuna.samplers.NSGAIISampler):
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()
