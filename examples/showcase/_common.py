"""Small maths shared by the experiments, computed with fastloss's kernels."""
from __future__ import annotations

import numpy as np

import fastloss as fl


def sigmoid(z):
    """sigma(z), as the gradient of the binary cross-entropy against target 0.

    d/dz [-log(1 - sigma(z))] = sigma(z), so the per-sample gradient of
    ``binary_cross_entropy(z, 0, reduction="none")`` is sigma(z), computed by
    the kernel without overflow for any finite z.
    """
    z = np.asarray(z, dtype=np.float64)
    flat = z.reshape(-1)
    grad = fl.binary_cross_entropy(flat, np.zeros_like(flat), reduction="none").grad
    return grad.reshape(z.shape)


def sigmoid_derivative(z):
    """sigma'(z) = sigma(z) sigma(-z) (= sigma(z) (1 - sigma(z)), without cancellation)."""
    z = np.asarray(z, dtype=np.float64)
    return sigmoid(z) * sigmoid(-z)



def single_threaded_blas():
    """A context in which NumPy's BLAS uses one thread.

    The experiments multiply small matrices (at most 1347 x 64 by 64 x 10),
    for which waking and synchronising BLAS threads costs more than the
    product: on a busy two-core machine the digits fits ran some 40 times
    slower with the default thread pool.  threadpoolctl comes with
    scikit-learn, which these experiments need anyway.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
