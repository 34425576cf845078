"""Forked workers (spaCy's `nlp.pipe(n_process=N)` on Linux) that work and
stay quiet.

- torch's OpenMP thread pool does not survive a fork: a child that inherits
  it hangs at its first parallel op, so each child runs torch on one thread.
- Hugging Face tokenizers print a warning in every child forked after the
  parent tokenized in parallel, and switch parallelism off there. Switching
  it off is right for a worker; the warning is noise. The parent states the
  choice (TOKENIZERS_PARALLELISM=false) for the instant of the fork, which is
  when tokenizers reads it, and takes it back at once, so the parent keeps
  its parallel tokenizer. A value the user set is never touched.

The hooks are process-wide, so they are installed once, by the first
binder_ner component built, not at import.
"""
import os

import torch

_TOKENIZERS_PARALLELISM = "TOKENIZERS_PARALLELISM"
_installed = False
_set_for_this_fork = False


def _before_fork() -> None:
    global _set_for_this_fork
    if _TOKENIZERS_PARALLELISM not in os.environ:
        os.environ[_TOKENIZERS_PARALLELISM] = "false"
        _set_for_this_fork = True


def _after_fork_in_parent() -> None:
    global _set_for_this_fork
    if _set_for_this_fork:
        os.environ.pop(_TOKENIZERS_PARALLELISM, None)
        _set_for_this_fork = False


def _after_fork_in_child() -> None:
    torch.set_num_threads(1)


def install_fork_hooks() -> None:
    """Install the fork hooks once per process (a no-op where the platform
    has no fork)."""
    global _installed
    if _installed or not hasattr(os, "register_at_fork"):
        return
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
    _installed = True
