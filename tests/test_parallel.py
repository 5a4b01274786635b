"""minires.parallel: batch chunks, scratch memory, worker threads; and the operations that use them
(conv2d, batch_norm) cut into many chunks, checked against the oracle and against one thread."""
import os
import threading

import numpy as np
import pytest

import minires
from minires import backend, parallel, reference
from minires.functional.conv import conv2d, save_cols
from minires.functional.normalization import batch_norm
from minires.testing import gradcheck
from minires.testing.strategies import normal_array


def on(device, array, requires_grad=False):
    return minires.tensor(backend.to_device(np.asarray(array), device), requires_grad=requires_grad)


def host(a):
    return backend.to_numpy(a.data if isinstance(a, minires.Tensor) else a)


@pytest.fixture
def one_thread_after():
    """Whatever a test does to the thread count, the next test starts with the default again."""
    count = parallel.get_num_threads()
    yield
    parallel.set_num_threads(count)


# ------------------------------------------------------------------ batch_chunks

@pytest.mark.parametrize("batch, per_image, min_images", [
    (32, 1 << 20, 1), (32, 3 << 20, 1), (7, 1 << 20, 1), (32, 100, 1), (32, 1 << 30, 1), (1, 1 << 30, 1),
    (32, 1 << 20, 5), (32, 1 << 20, 40), (5, 1, 1), (32, 100 << 10, 1), (32, 100 << 10, 17), (3, 1 << 20, 1)])
def test_chunks_cover_the_batch_once_in_order_evenly(batch, per_image, min_images):
    chunks = parallel.batch_chunks(batch, per_image, min_images)
    assert chunks[0][0] == 0 and chunks[-1][1] == batch
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))            # contiguous, in order
    sizes = [stop - start for start, stop in chunks]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= min(min_images, batch)        # as equal as can be
    assert min(sizes) >= min(batch, parallel.CHUNK_BYTES // per_image) or len(chunks) <= 2  # each fills a buffer
    assert len(chunks) == 1 or len(chunks) % 2 == 0
    if 2 * per_image * batch < parallel.CHUNK_BYTES:
        assert chunks == [(0, batch)]                                         # small work: one chunk
    elif batch >= 2 * min_images:
        assert len(chunks) >= 2                                               # else: one chunk per core


def test_chunk_examples():
    assert parallel.batch_chunks(32, 1 << 20) == [(i, i + 4) for i in range(0, 32, 4)]   # 4 MB of 1 MB images
    assert parallel.batch_chunks(32, 5 << 20) == [(i, i + 1) for i in range(32)]         # an image is > 4 MB
    assert parallel.batch_chunks(10, 1 << 20, min_images=8) == [(0, 10)]                # 2 chunks would be too short
    assert parallel.batch_chunks(32, 1200 << 10) == [(0, 4), (4, 8), (8, 11), (11, 14), (14, 17), (17, 20),
                                                     (20, 23), (23, 26), (26, 29), (29, 32)]  # 3 images and more
    assert parallel.batch_chunks(32, 1 << 20, min_images=11) == [(0, 16), (16, 32)]      # 2, not 3 of 11
    assert parallel.batch_chunks(0, 1 << 20) == [(0, 0)]                                # an empty batch
    assert parallel.batch_chunks(32, 100 << 10) == [(0, 16), (16, 32)]     # 3.1 MB in all: half each, not one chunk
    assert parallel.batch_chunks(32, 50 << 10) == [(0, 32)]                # 1.6 MB: too little to share
    assert parallel.batch_chunks(32, 100 << 10, min_images=17) == [(0, 32)]            # halves too short


def test_chunks_do_not_depend_on_the_thread_count(one_thread_after):
    before = parallel.batch_chunks(32, 1 << 20)
    parallel.set_num_threads(1)
    assert parallel.batch_chunks(32, 1 << 20) == before


@pytest.mark.parametrize("size, itemsize, count", [(10, 4, 1), ((1 << 20) // 4, 4, 1), ((2 << 20) // 4, 4, 2),
                                                   ((3 << 20) // 4 + 3, 4, 2), ((5 << 20) // 8, 8, 4), (0, 4, 1)])
def test_flat_blocks_cover_an_array_once_in_an_even_count_of_1_mb_blocks(size, itemsize, count):
    blocks = parallel.flat_blocks(size, itemsize)
    assert len(blocks) == count and blocks[0][0] == 0 and blocks[-1][1] == size
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))


@pytest.mark.parametrize("op", ["relu", "max_pool2d"])
def test_under_no_grad_nothing_is_saved_for_a_backward_and_the_output_is_the_same(xp, device, monkeypatch,
                                                                                   op):
    import minires.functional as F
    from minires.functional.activation import ReLU
    from minires.functional.pooling import MaxPool2d
    cls, saved = (ReLU, "mask") if op == "relu" else (MaxPool2d, "winner")
    kept = []
    real = cls.forward

    def forward(self, x):                                                    # what each forward kept
        out = real(self, x)
        kept.append(getattr(self, saved))
        return out
    monkeypatch.setattr(cls, "forward", forward)
    x = np.array([[[[1.0, np.nan, -np.inf, 2.0], [2.0, 2.0, 0.0, -1.0], [np.inf, -3.0, 5.0, 5.0],
                    [0.0, -0.0, 1e-30, 4.0]]]])
    run = F.relu if op == "relu" else (lambda t: F.max_pool2d(t, 3, 2, 1))
    recorded = run(on(device, x, True))
    with minires.no_grad():
        plain = run(on(device, x, True))
    assert kept[0] is not None and kept[1] is None                           # saved only when recording
    np.testing.assert_array_equal(host(plain), host(recorded))              # NaN, inf and ties alike


def test_relu_in_many_blocks_is_relu(monkeypatch, one_thread_after):
    from minires.functional.activation import relu
    monkeypatch.setattr(parallel, "ELEMENTWISE_BLOCK_BYTES", 16)           # blocks of 4 float32
    x = np.array([[-1.0, 0.0, 2.0, np.nan, -np.inf, np.inf, -0.0, 3.0, 1e-30, -5.0, 7.0]], np.float32).T
    assert len(parallel.flat_blocks(x.size, x.itemsize)) == 2
    for count in (1, 2):
        parallel.set_num_threads(count)
        base = minires.tensor(np.repeat(x, 2, axis=1), requires_grad=True)
        xt = base[:, ::2]                                                   # every other column:
        assert not xt.data.flags.c_contiguous                               # a strided input
        out = relu(xt)
        out.backward(minires.ones(out.shape))
        assert np.array_equal(out.data, np.maximum(x, 0), equal_nan=True)    # NaN stays NaN, -inf gives 0
        assert np.array_equal(base.grad.data[:, ::2], (x > 0).astype(np.float32))   # ReLU'(0) = 0, none at NaN


# ------------------------------------------------------------------ scratch

def test_scratch_is_reused_grown_and_private_to_a_thread():
    a = parallel.scratch("test.a", (4, 5), np.float32)
    assert a.shape == (4, 5) and a.dtype == np.float32
    b = parallel.scratch("test.a", (2, 3), np.float64)                     # smaller: the same memory
    assert np.shares_memory(a, b)
    c = parallel.scratch("test.a", (1000, 1000), np.float32)               # larger: a new buffer
    assert c.shape == (1000, 1000) and not np.shares_memory(a, c)
    assert not np.shares_memory(c, parallel.scratch("test.other", (10,), np.float32))   # another name
    seen = []
    thread = threading.Thread(target=lambda: seen.append(parallel.scratch("test.a", (4, 5), np.float32)))
    thread.start()
    thread.join()
    assert not np.shares_memory(seen[0], c)                                # another thread: its own
    parallel.release_scratch()
    assert not np.shares_memory(parallel.scratch("test.a", (4, 5), np.float32), c)


def test_empty_scratch():
    assert parallel.scratch("test.empty", (0, 3), np.float32).shape == (0, 3)


@pytest.mark.parametrize("columns, dtype, stride", [(2048, np.float32, 2048 + 16), (512, np.float32, 512 + 16),
                                                    (256, np.float64, 256 + 8), (1000, np.float32, 1000),
                                                    (256, np.float32, 256), (0, np.float32, None)])
def test_a_scratch_matrix_has_its_rows_a_cache_line_apart_past_multiples_of_2_kb(columns, dtype, stride):
    m = parallel.scratch_matrix("test.matrix", 3, columns, dtype)
    assert m.shape == (3, columns) and m.dtype == dtype
    if columns:                                                            # (an empty one has no strides to speak of)
        assert m.strides == (stride * m.itemsize, m.itemsize)
        cols = m.reshape(3, 2, columns // 2)                               # splitting a row's columns: a view
        assert np.shares_memory(cols, m)
        a = np.arange(6 * columns, dtype=dtype).reshape(columns, 6)
        np.matmul(np.ones((3, columns), dtype), a, out=m[:, :6] if columns >= 6 else m)
        assert np.array_equal(m[:, :6], np.ones((3, columns), dtype) @ a)


def test_im2col_refuses_an_out_it_cannot_fill_in_place():
    from minires.functional.im2col import im2col
    x = normal_array((2, 3, 5, 5), 1, np.float32)
    out = np.empty((675, 2), np.float32).T                 # (2, 675), column-major: no (3, 3, 3, 2, 5, 5) view
    with pytest.raises(ValueError, match="cannot be seen as"):
        im2col(x, (3, 3), (1, 1), (1, 1), (1, 1), (5, 5), out=out)


# ------------------------------------------------------------------ for_each_chunk

def test_every_chunk_runs_once_and_blas_threads_come_back(one_thread_after):
    parallel.set_num_threads(2)
    controllers = parallel._threads.blas
    before = [c.num_threads for c in controllers]
    seen, lock = [], threading.Lock()

    def work(k, start, stop):
        with lock:
            seen.append((k, start, stop, [c.num_threads for c in controllers]))

    chunks = [(i, i + 2) for i in range(0, 20, 2)]
    parallel.for_each_chunk(work, chunks)
    assert sorted(s[:3] for s in seen) == [(k, a, b) for k, (a, b) in enumerate(chunks)]
    assert all(threads == [1] * len(controllers) for *_, threads in seen)    # one BLAS thread per chunk
    assert [c.num_threads for c in controllers] == before


def test_an_error_in_a_chunk_is_raised_after_every_running_chunk_ends(one_thread_after):
    parallel.set_num_threads(2)
    finished = []

    def work(k, start, stop):
        if k == 3:
            raise ValueError("chunk 3 failed")
        finished.append(k)

    with pytest.raises(ValueError, match="chunk 3 failed"):
        parallel.for_each_chunk(work, [(i, i + 1) for i in range(8)])
    assert 3 not in finished and len(finished) < 8 or finished == [k for k in range(8) if k != 3]
    parallel.for_each_chunk(lambda k, a, b: finished.append(("again", k)), [(0, 1), (1, 2)])  # still works
    assert ("again", 0) in finished and ("again", 1) in finished


def test_chunks_inside_a_chunk_run_in_turn(one_thread_after):
    parallel.set_num_threads(2)
    inner = []

    def outer(k, start, stop):
        parallel.for_each_chunk(lambda j, a, b: inner.append((k, j)), [(0, 1), (1, 2)])

    parallel.for_each_chunk(outer, [(0, 1), (1, 2), (2, 3)])
    assert sorted(inner) == [(k, j) for k in range(3) for j in range(2)]


@pytest.mark.parametrize("count", [0, -1, 1.5, True, "2"])
def test_set_num_threads_refuses_what_is_not_a_positive_int(count):
    with pytest.raises(ValueError, match="positive int"):
        parallel.set_num_threads(count)


# ------------------------------------------------------------------ the operations, in many chunks

CONVS = [  # (x shape, weight shape, keyword arguments): each path of conv2d's backward
    ((6, 4, 7, 6), (6, 4, 3, 3), dict(padding=1)),                         # dx as a convolution (stride 1)
    ((6, 4, 7, 6), (6, 2, 3, 3), dict(padding=1, groups=2, dilation=2)),
    ((6, 4, 7, 6), (3, 4, 3, 3), dict(padding=(1, 0), stride=2)),           # dx by col2im
    ((6, 2, 7, 6), (6, 2, 3, 3), dict(padding=1)),                         # more out than in channels: col2im
    ((6, 4, 7, 6), (6, 4, 1, 1), dict(stride=2)),                          # 1x1
    ((6, 4, 7, 6), (6, 4, 3, 3), dict(padding=4)),                         # padding > d(k - 1): col2im
    ((6, 1, 10, 10), (129, 1, 3, 3), dict(padding=1)),                     # > 128 filters: dW not transposed
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs", CONVS)
@pytest.mark.parametrize("keep", [False, True])
def test_conv2d_in_one_chunk_per_image(xp, device, monkeypatch, x_shape, w_shape, kwargs, keep):
    """Each image its own chunk: the same numbers as the oracle, and gradients that pass gradcheck."""
    monkeypatch.setattr(parallel, "CHUNK_BYTES", 1)
    x, w, b = normal_array(x_shape, 1), normal_array(w_shape, 2), normal_array((w_shape[0],), 3)
    args = [on(device, x, True), on(device, w, True), on(device, b, True)]
    with save_cols(keep):
        out = conv2d(*args, **kwargs)
    if xp is np:
        assert len(out._creator.chunks) == x_shape[0]
    np.testing.assert_allclose(host(out), reference.conv2d(x, w, b, **kwargs), rtol=1e-12, atol=1e-12)
    with save_cols(keep):
        gradcheck(lambda x, w, b: conv2d(x, w, b, **kwargs), *args)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", CONVS)
@pytest.mark.parametrize("keep", [False, True])
def test_conv2d_in_one_chunk_with_its_copies_split_by_channels(monkeypatch, one_thread_after, x_shape, w_shape,
                                                               kwargs, keep):
    """A batch that is one chunk copies its columns in one range of channels per thread (SPLIT_COPY_BYTES):
    the oracle's numbers and gradients that pass gradcheck, and the same bits as one copy (a copy does not
    round), with 2 and with 3 threads (ranges of unequal length; more threads than the 2 channels of a group)."""
    import minires.functional.conv as conv_module
    x, w, b = normal_array(x_shape, 1), normal_array(w_shape, 2), normal_array((w_shape[0],), 3)
    for threads in (2, 3):
        parallel.set_num_threads(threads)
        results = []
        for split_bytes in (1 << 60, 0):                                     # one copy, then split copies
            monkeypatch.setattr(conv_module, "SPLIT_COPY_BYTES", split_bytes)
            args = [minires.tensor(a, requires_grad=True) for a in (x, w, b)]
            with save_cols(keep):
                out = conv2d(*args, **kwargs)
            assert len(out._creator.chunks) == 1 and out._creator.split_copies == (split_bytes == 0)
            out.backward(minires.tensor(np.cos(np.arange(out.data.size, dtype=np.float64)).reshape(out.shape)))
            results.append([out.data] + [a.grad.data for a in args])
        for one, split in zip(*results):
            assert np.array_equal(one, split)
        np.testing.assert_allclose(results[1][0], reference.conv2d(x, w, b, **kwargs), rtol=1e-12, atol=1e-12)
    with save_cols(keep):
        leaves = [minires.tensor(a, requires_grad=True) for a in (x, w, b)]
        gradcheck(lambda x, w, b: conv2d(x, w, b, **kwargs), *leaves)


def _conv_and_grads(x, w, kwargs):
    xt, wt = minires.tensor(x, requires_grad=True), minires.tensor(w, requires_grad=True)
    out = conv2d(xt, wt, None, **kwargs)
    out.backward(minires.tensor(np.cos(np.arange(int(np.prod(out.shape)), dtype=x.dtype)).reshape(out.shape)))
    return out.data, xt.grad.data, wt.grad.data


@pytest.mark.parametrize("x_shape, w_shape, kwargs", CONVS)
def test_conv2d_gives_the_same_bits_on_any_number_of_threads(monkeypatch, one_thread_after, x_shape, w_shape,
                                                             kwargs):
    monkeypatch.setattr(parallel, "CHUNK_BYTES", 1)
    x, w = normal_array(x_shape, 4, np.float32), normal_array(w_shape, 5, np.float32)
    parallel.set_num_threads(1)
    one = _conv_and_grads(x, w, kwargs)
    parallel.set_num_threads(2)
    two = _conv_and_grads(x, w, kwargs)
    for a, b in zip(one, two):
        assert np.array_equal(a, b)


def test_batch_norm_gives_the_same_bits_on_any_number_of_threads(monkeypatch, one_thread_after):
    monkeypatch.setattr(backend, "CPU_CACHE_BLOCK_BYTES", 64)              # a block per channel or two
    x = normal_array((6, 9, 5, 4), 6, np.float32)
    results = []
    for count in (1, 2):
        parallel.set_num_threads(count)
        xt = minires.tensor(x, requires_grad=True)
        gamma, beta = minires.ones(9, requires_grad=True), minires.zeros(9, requires_grad=True)
        mean, var = np.zeros(9, np.float32), np.ones(9, np.float32)
        out = batch_norm(xt, mean, var, gamma, beta, training=True)
        out.backward(minires.tensor(np.sin(np.arange(int(np.prod(out.shape)), dtype=np.float32)).reshape(out.shape)))
        results.append([out.data, xt.grad.data, gamma.grad.data, beta.grad.data, mean, var])
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_batch_norm_shares_its_channels_among_the_threads_with_the_same_bits(one_thread_after):
    from minires.functional.normalization import SHARED_BYTES, _channel_blocks
    x = normal_array((4, 128, 32, 32), 7, np.float32)                      # 2 MB: two cache blocks
    assert x.nbytes >= SHARED_BYTES["training"]
    results = []
    for count in (1, 4):
        parallel.set_num_threads(count)
        blocks, share = _channel_blocks(x, training=True)
        assert share and len(blocks) == max(2, count)                       # at least one per thread
        xt = minires.tensor(x, requires_grad=True)
        gamma, beta = minires.ones(128, requires_grad=True), minires.zeros(128, requires_grad=True)
        out = batch_norm(xt, np.zeros(128, np.float32), np.ones(128, np.float32), gamma, beta, training=True)
        out.backward(minires.tensor(np.cos(np.arange(out.data.size, dtype=np.float32)).reshape(out.shape)))
        results.append([out.data, xt.grad.data, gamma.grad.data, beta.grad.data])
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_batch_norm_keeps_small_inputs_on_the_calling_thread():
    """Below SHARED_BYTES the blocks run in turn: handing them over costs more than it saves. Evaluation
    (two passes over a block) needs a larger x than training (about ten) before sharing pays."""
    from minires.functional.normalization import SHARED_BYTES, _channel_blocks
    assert SHARED_BYTES["training"] < SHARED_BYTES["evaluation"]
    small = np.zeros((32, 512, 4, 4), np.float32)                            # 1 MB: ResNet-18's layer4 on CIFAR
    middle = np.zeros((32, 96, 16, 16), np.float32)                          # 3 MB
    assert _channel_blocks(small, training=True)[1] is False
    assert _channel_blocks(small, training=False)[1] is False
    assert _channel_blocks(middle, training=True)[1] is True
    assert _channel_blocks(middle, training=False)[1] is False
    blocks, share = _channel_blocks(middle, training=False)
    assert blocks[0] == (0, 32) and blocks[-1][1] == 96                     # still 1 MB blocks, in turn


def test_one_chunk_split_by_rows_agrees_with_one_thread_to_rounding(one_thread_after):
    """One chunk (the default cut of a small batch) has its products split by rows among the threads, and the
    BLAS may round a product of fewer rows differently: the same numbers up to float32 rounding, and the same
    bits run to run."""
    x, w = normal_array((2, 64, 16, 16), 7, np.float32), normal_array((64, 64, 3, 3), 8, np.float32)
    assert len(parallel.batch_chunks(2, 64 * 9 * 16 * 16 * 4)) == 1
    parallel.set_num_threads(1)
    one = _conv_and_grads(x, w, dict(padding=1))
    parallel.set_num_threads(2)
    two = _conv_and_grads(x, w, dict(padding=1))
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    for a, b in zip(two, _conv_and_grads(x, w, dict(padding=1))):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("op, kwargs", [
    ("max", dict(kernel_size=3, stride=2, padding=1)),                     # ResNet's stem pooling
    ("max", dict(kernel_size=2, stride=1, dilation=2, ceil_mode=True)),
    ("avg", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
])
def test_pooling_in_many_blocks(xp, device, monkeypatch, op, kwargs):
    """Pooling shares its blocks of planes among the threads: blocks of one plane each give the oracle's
    output, and a gradient that passes gradcheck."""
    from minires.functional.pooling import avg_pool2d, max_pool2d
    monkeypatch.setattr(backend, "CPU_CACHE_BLOCK_BYTES", 1)                # one (H, W) plane per block
    x = normal_array((3, 4, 9, 8), 9)
    pool = max_pool2d if op == "max" else avg_pool2d
    oracle = reference.max_pool2d if op == "max" else reference.avg_pool2d
    xt = on(device, x, True)
    np.testing.assert_allclose(host(pool(xt, **kwargs)), oracle(x, **kwargs), rtol=1e-12, atol=1e-12)
    gradcheck(lambda x: pool(x, **kwargs), xt)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_process_gets_threads_of_its_own(monkeypatch, one_thread_after):
    """multiprocessing forks on Linux; a child used to wait forever on its parent's (absent) worker threads."""
    import multiprocessing
    parallel.set_num_threads(2)
    monkeypatch.setattr(parallel, "CHUNK_BYTES", 1)
    x, w = normal_array((4, 3, 8, 8), 10, np.float32), normal_array((4, 3, 3, 3), 11, np.float32)
    want = _conv_and_grads(x, w, dict(padding=1))                          # the parent's pool is running now
    queue = multiprocessing.get_context("fork").SimpleQueue()

    def child():
        queue.put([np.array_equal(a, b) for a, b in zip(want, _conv_and_grads(x, w, dict(padding=1)))])

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(timeout=60)
    alive = process.is_alive()
    if alive:
        process.kill()
    assert not alive and process.exitcode == 0, "the forked process hung or failed"
    assert queue.get() == [True, True, True]


def test_without_threadpoolctl_chunks_run_in_turn(monkeypatch):
    """threadpoolctl is how minires keeps the BLAS to one thread per chunk; without it (or with a BLAS it does not
    know) minires uses one thread and leaves the BLAS alone, with the same results."""
    x, w = normal_array((6, 4, 7, 6), 12, np.float32), normal_array((6, 4, 3, 3), 13, np.float32)
    monkeypatch.setattr(parallel, "CHUNK_BYTES", 1)
    want = _conv_and_grads(x, w, dict(padding=1))
    monkeypatch.setattr(parallel, "_blas_controllers", lambda: [])
    monkeypatch.setattr(parallel, "_threads", parallel._Threads())          # decided again, on first use
    assert parallel.get_num_threads() == 1
    for a, b in zip(want, _conv_and_grads(x, w, dict(padding=1))):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("rows", [1, 8])
def test_linear_and_matmul_run_the_blas_on_one_thread(monkeypatch, one_thread_after, rows):
    """Products on the BLAS's own threads leave them spinning on the cores the next operations need, so
    Linear and MatMul share their rows among minires's threads instead, one BLAS thread each, and a product
    of one row runs on one BLAS thread too."""
    from minires.functional import linear, matmul
    if not parallel._blas_controllers():
        pytest.skip("threadpoolctl is not installed: minires does not control the BLAS's threads")
    parallel.set_num_threads(2)
    blas_threads, real_matmul = [], np.matmul

    def spy(*args, **kwargs):
        blas_threads.append(max(c.num_threads for c in parallel._threads.blas))
        return real_matmul(*args, **kwargs)

    monkeypatch.setattr(np, "matmul", spy)
    x = minires.tensor(normal_array((rows, 64), 1, np.float32), requires_grad=True)
    w = minires.tensor(normal_array((10, 64), 2, np.float32), requires_grad=True)
    m = minires.tensor(normal_array((64, 3), 3, np.float32), requires_grad=True)
    out = linear(x, w) + matmul(x, m).sum(dim=1, keepdim=True)
    out.backward(minires.tensor(normal_array(tuple(out.shape), 4, np.float32)))
    assert len(blas_threads) >= 6 and set(blas_threads) == {1}
    assert max(c.num_threads for c in parallel._threads.blas) == 2         # as it was, after the products
