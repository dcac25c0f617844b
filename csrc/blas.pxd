# GEMM for the kernels: scipy.linalg.cython_blas's sgemm/dgemm behind one
# fused name, plus a split of one GEMM over threads.
#
# BLAS is column-major.  A C-order (R, S) array is a column-major S x R
# matrix, so every call site writes its GEMM in column-major terms and gives
# the NumPy meaning in a comment beside it.
#
# fastnet runs BLAS single-threaded (fastnet/_cpu/__init__.py limits scipy's
# OpenBLAS to one thread) and parallelises with its own OpenMP threads:
# OpenBLAS's pool and OpenMP's spinning workers on the same few cores slow
# each other down by two orders of magnitude (measured on 2 cores).

from cython.parallel cimport prange
from scipy.linalg.cython_blas cimport sgemm, dgemm

from common cimport floating

cdef extern from "bcast_gemm.h" nogil:
    # 1 where the target has fused multiply-adds (bcast_gemm.h): the
    # kernels then use the products below, else BLAS
    const int FN_FAST_PRODUCTS
    void bcast_gemm_f(Py_ssize_t m, Py_ssize_t n, Py_ssize_t kk, const float* A,
                      Py_ssize_t ars, Py_ssize_t acs, const float* B, Py_ssize_t ldb,
                      float* C, Py_ssize_t ldc, int accumulate)
    void bcast_gemm_d(Py_ssize_t m, Py_ssize_t n, Py_ssize_t kk, const double* A,
                      Py_ssize_t ars, Py_ssize_t acs, const double* B, Py_ssize_t ldb,
                      double* C, Py_ssize_t ldc, int accumulate)
    void bcast_rowdot_f(Py_ssize_t m, Py_ssize_t rows, Py_ssize_t kk, const float* A,
                        Py_ssize_t lda, const float* B, Py_ssize_t ldb, float* C,
                        Py_ssize_t ldc)
    void bcast_rowdot_d(Py_ssize_t m, Py_ssize_t rows, Py_ssize_t kk, const double* A,
                        Py_ssize_t lda, const double* B, Py_ssize_t ldb, double* C,
                        Py_ssize_t ldc)


cdef inline void bcast_gemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t kk,
                            const floating* A, Py_ssize_t ars, Py_ssize_t acs,
                            const floating* B, Py_ssize_t ldb, floating* C,
                            Py_ssize_t ldc, bint accumulate) noexcept nogil:
    """C[i, j] (+)= sum_k A[i*ars + k*acs] * B[k*ldb + j]  (row-major B, C;
    i < m, j < n, k < kk): bcast_gemm.h's register-blocked product, for the
    small products of the convolutions where BLAS's packing costs more than
    it saves.  Every element is one multiply-add chain in k order."""
    if floating is float:
        bcast_gemm_f(m, n, kk, A, ars, acs, B, ldb, C, ldc, accumulate)
    else:
        bcast_gemm_d(m, n, kk, A, ars, acs, B, ldb, C, ldc, accumulate)


cdef inline void gemm(char transa, char transb, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb, floating beta,
                      floating* c, int ldc) noexcept nogil:
    """C := alpha * op(A) @ op(B) + beta * C   (column-major, op = N or T)"""
    cdef int i, j
    if m <= 0 or n <= 0:
        return
    if k <= 0:
        # an empty sum (BLAS would reject the zero leading dimensions)
        for j in range(n):
            for i in range(m):
                c[j * ldc + i] = 0 if beta == 0 else beta * c[j * ldc + i]
        return
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &alpha, <float*>a, &lda,
              <float*>b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &alpha, <double*>a, &lda,
              <double*>b, &ldb, &beta, c, &ldc)


cdef inline void gemm_parallel(char transa, char transb, int m, int n, int k,
                               floating alpha, const floating* a, int lda,
                               const floating* b, int ldb, floating beta,
                               floating* c, int ldc, int n_blocks,
                               int n_threads) noexcept nogil:
    """gemm, with C cut into n_blocks blocks of columns (when it has at
    least as many columns as rows) or of rows, one single-threaded GEMM per
    block, the blocks shared among n_threads threads.

    Column blocks are whole multiples of 4 columns and row blocks of 8 rows,
    so that each block keeps to the BLAS micro-kernel's full tiles except
    at the matrix's own edge.  The blocks, not the threads, decide the
    result: OpenBLAS picks its kernels by the size of the product it is
    given (its small-matrix kernels sum in another order), so a block of
    another size may round differently.  The compiled loop's thread team
    (team.pxd) runs fewer threads than n_blocks without changing a bit.
    """
    cdef int t, nb, nt, start, stop, step
    cdef long work = <long>m * n * k
    nb = n_blocks
    if work < 131072 or nb <= 1:
        gemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    if n >= m:
        # column blocks: C[:, j0:j1] = op(A) @ op(B)[:, j0:j1]
        step = (((n + nb - 1) // nb) + 3) // 4 * 4
        nb = (n + step - 1) // step
        nt = n_threads if n_threads < nb else nb
        for t in prange(nb, num_threads=nt if nt >= 1 else 1, schedule='static'):
            start = t * step
            stop = start + step
            if stop > n:
                stop = n
            gemm(transa, transb, m, stop - start, k, alpha, a, lda,
                 b + (start * ldb if transb == c'N' else start), ldb, beta,
                 c + start * ldc, ldc)
    else:
        # row blocks: C[i0:i1, :] = op(A)[i0:i1, :] @ op(B)
        step = (((m + nb - 1) // nb) + 7) // 8 * 8
        nb = (m + step - 1) // step
        nt = n_threads if n_threads < nb else nb
        for t in prange(nb, num_threads=nt if nt >= 1 else 1, schedule='static'):
            start = t * step
            stop = start + step
            if stop > m:
                stop = m
            gemm(transa, transb, stop - start, n, k, alpha,
                 a + (start if transa == c'N' else start * lda), lda,
                 b, ldb, beta, c + start, ldc)


cdef inline void bcast_rowdot(Py_ssize_t m, Py_ssize_t rows, Py_ssize_t kk,
                              const floating* A, Py_ssize_t lda, const floating* B,
                              Py_ssize_t ldb, floating* C, Py_ssize_t ldc) noexcept nogil:
    """C[n, r] = A[n, :kk] . B[r, :kk]  (n < m, r < rows; row-major, C's rows
    ldc apart): A @ B.T with both read along their rows (bcast_gemm.h)."""
    if floating is float:
        bcast_rowdot_f(m, rows, kk, A, lda, B, ldb, C, ldc)
    else:
        bcast_rowdot_d(m, rows, kk, A, lda, B, ldb, C, ldc)
