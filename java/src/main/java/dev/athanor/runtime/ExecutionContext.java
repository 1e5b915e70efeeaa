package dev.athanor.runtime;

import dev.athanor.memory.InFlight;
import dev.athanor.memory.Storage;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.ref.Cleaner;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Where ops run on one device: a compute stream, {@code n >= 1} copy streams and (CUDA) a scratch arena from
 * which kernels take their temporaries. Every op ({@link dev.athanor.ops.Ops}, tensor copies) runs in the
 * <em>current</em> context of its device: {@link #current(Device)} is the innermost context made current on the
 * calling thread with {@link #makeCurrent()}, else the thread's own context for that device, created on first
 * use. Work of one context is ordered by its compute stream; ordering with other streams (its copy streams,
 * other threads' contexts) is explicit, with {@link Event}s.
 *
 * <p><b>CUDA.</b> The streams are non-blocking streams created for the context. The scratch arena is DEVICE
 * storage from the caching allocator (so it counts in the DEVICE budget like every other byte); it starts empty
 * and, when a kernel reports {@code ATH_ERR_SCRATCH}, grows to at least the bytes the kernel needs, rounded up
 * to {@link #SCRATCH_GRANULE}, and the op is retried once ({@link #run}). The native {@code ath_cuda_ctx} the
 * ops receive is an off-heap struct owned by the context, rewritten when the arena grows.
 *
 * <p><b>CPU.</b> Ops are synchronous; the streams are placeholders and there is no arena.
 *
 * <p><b>Threads and lifetime.</b> A context is used by one thread at a time. Contexts made with {@link #create}
 * belong to the caller, who closes them; closing waits for their streams, gives the arena back and destroys the
 * streams. A thread's implicit contexts are released by a {@link Cleaner} once the thread has died (or by
 * {@link #close()}; the next {@link #current} then makes a new one). Memory used by two contexts' streams needs
 * {@link Storage#recordStream} and events, as with any two streams.
 */
public final class ExecutionContext implements AutoCloseable {
  /** Scratch arena sizes are multiples of this (1 MiB). */
  public static final long SCRATCH_GRANULE = 1L << 20;
  /** Copy streams of a thread's implicit context. */
  public static final int DEFAULT_COPY_STREAMS = 1;

  private static final Cleaner CLEANER = Cleaner.create();
  private static final ThreadLocal<PerThread> THREAD = ThreadLocal.withInitial(PerThread::new);

  private final Device device;
  private final boolean implicit;
  private final String owner; // the thread that made an implicit context
  private final Resources res;
  private final Cleaner.Cleanable cleanable;
  private final AtomicBoolean closed = new AtomicBoolean();

  /** The calling thread's made-current stacks and implicit contexts, per device. */
  private static final class PerThread {
    final HashMap<Device, ExecutionContext> implicit = new HashMap<>();
    final HashMap<Device, ArrayDeque<ExecutionContext>> stacks = new HashMap<>();
  }

  /** What the context owns natively, released by close() or by the Cleaner (no reference to the context). */
  private static final class Resources implements Runnable {
    final Device device;
    final Stream compute;
    final List<Stream> copies;
    final Arena arena;           // owns ctx (CUDA only)
    final MemorySegment ctx;     // ath_cuda_ctx, or null on the CPU
    volatile Storage scratch;    // DEVICE arena, or null

    Resources(Device device, Stream compute, List<Stream> copies, Arena arena, MemorySegment ctx) {
      this.device = device;
      this.compute = compute;
      this.copies = copies;
      this.arena = arena;
      this.ctx = ctx;
    }

    @Override
    public void run() {
      RuntimeException failure = null;
      try {
        compute.synchronize();
        for (Stream s : copies) s.synchronize();
      } catch (RuntimeException e) {
        failure = e;
      }
      Storage s = scratch;
      scratch = null;
      if (s != null) s.close(); // freed on the compute stream while it still exists
      for (Stream c : copies) failure = destroy(c, failure);
      failure = destroy(compute, failure);
      if (arena != null) arena.close();
      if (failure != null) throw failure;
    }

    private static RuntimeException destroy(Stream s, RuntimeException failure) {
      try {
        s.destroy();
      } catch (RuntimeException e) {
        if (failure == null) return e;
        failure.addSuppressed(e);
      }
      return failure;
    }
  }

  private ExecutionContext(Device device, int copyStreams, boolean implicit) {
    Objects.requireNonNull(device, "device");
    if (copyStreams < 1) throw new IllegalArgumentException("copyStreams = " + copyStreams + " must be >= 1");
    if (device.isCuda()) Cuda.checkDevice(device);
    this.device = device;
    this.implicit = implicit;
    this.owner = implicit ? Thread.currentThread().getName() : null;
    Stream compute = Stream.create(device, true);
    Stream[] copies = new Stream[copyStreams];
    Arena arena = null;
    MemorySegment ctx = null;
    try {
      for (int i = 0; i < copyStreams; i++) copies[i] = Stream.create(device, true);
      if (device.isCuda()) {
        arena = Arena.ofShared();
        CStruct layout = CStruct.of(KernelArgs.CudaCtx.class);
        ctx = arena.allocate(layout.size, 8);
        layout.write(ctx, new KernelArgs.CudaCtx(device.index(), compute.handle(), 0, 0));
      }
    } catch (RuntimeException e) {
      compute.destroy();
      for (Stream s : copies) if (s != null) s.destroy();
      if (arena != null) arena.close();
      throw e;
    }
    this.res = new Resources(device, compute, List.of(copies), arena, ctx);
    this.cleanable = CLEANER.register(this, res);
  }

  /** A new context on {@code device} with one copy stream; the caller closes it. */
  public static ExecutionContext create(Device device) {
    return create(device, 1);
  }

  /** A new context on {@code device} with {@code copyStreams >= 1} copy streams; the caller closes it. */
  public static ExecutionContext create(Device device, int copyStreams) {
    return new ExecutionContext(device, copyStreams, false);
  }

  /**
   * The calling thread's current context for {@code device}: the innermost one made current with
   * {@link #makeCurrent()}, else the thread's own (created on first use, with {@link #DEFAULT_COPY_STREAMS}).
   *
   * @throws AthanorException for a CUDA device when CUDA is unavailable (with the reason)
   */
  public static ExecutionContext current(Device device) {
    Objects.requireNonNull(device, "device");
    PerThread t = THREAD.get();
    ArrayDeque<ExecutionContext> stack = t.stacks.get(device);
    if (stack != null && !stack.isEmpty()) return stack.peek();
    ExecutionContext c = t.implicit.get(device);
    if (c == null || c.isClosed()) {
      c = new ExecutionContext(device, DEFAULT_COPY_STREAMS, true);
      t.implicit.put(device, c);
    }
    return c;
  }

  public Device device() {
    return device;
  }

  /** Whether this is a thread's implicit context (made by {@link #current}). */
  public boolean isImplicit() {
    return implicit;
  }

  /** The stream ops of this context are enqueued on. */
  public Stream computeStream() {
    checkOpen();
    return res.compute;
  }

  /** Copy stream {@code i} in [0, {@link #copyStreamCount()}). */
  public Stream copyStream(int i) {
    checkOpen();
    if (i < 0 || i >= res.copies.size()) {
      throw new IndexOutOfBoundsException("copy stream " + i + " out of range [0, " + res.copies.size() + ") of " + this);
    }
    return res.copies.get(i);
  }

  public int copyStreamCount() {
    return res.copies.size();
  }

  /** Bytes of the scratch arena (0 until a kernel asked for scratch; always 0 on the CPU). */
  public long scratchBytes() {
    Storage s = res.scratch;
    return s == null ? 0 : s.byteSize();
  }

  /** Address of the native {@code ath_cuda_ctx} (0 on the CPU). */
  long nativeContext() {
    return res.ctx == null ? 0 : res.ctx.address();
  }

  /**
   * Makes this context current for its device on the calling thread until the returned handle is closed, which
   * restores the previous one. Scopes nest; close them innermost first, on the same thread.
   */
  public Current makeCurrent() {
    checkOpen();
    ArrayDeque<ExecutionContext> stack = THREAD.get().stacks.computeIfAbsent(device, d -> new ArrayDeque<>());
    stack.push(this);
    return new Current(this, Thread.currentThread(), stack);
  }

  /** The scope of {@link #makeCurrent()}; closing it (idempotent) restores the previous current context. */
  public static final class Current implements AutoCloseable {
    private final ExecutionContext context;
    private final Thread thread;
    private final ArrayDeque<ExecutionContext> stack;
    private boolean closed;

    private Current(ExecutionContext context, Thread thread, ArrayDeque<ExecutionContext> stack) {
      this.context = context;
      this.thread = thread;
      this.stack = stack;
    }

    public ExecutionContext context() {
      return context;
    }

    @Override
    public void close() {
      if (closed) return;
      if (Thread.currentThread() != thread) {
        throw new IllegalStateException("makeCurrent() scope of " + context + " opened on " + thread.getName()
            + " closed on " + Thread.currentThread().getName());
      }
      if (stack.peek() != context) {
        throw new IllegalStateException("makeCurrent() scope of " + context + " closed while an inner scope ("
            + stack.peek() + ") is open: close scopes innermost first");
      }
      stack.pop();
      closed = true;
    }
  }

  /**
   * Runs one op in this context: on the CPU it has finished when this returns; on CUDA it is enqueued on the
   * compute stream. When the kernel needs more scratch than the arena holds ({@code ATH_ERR_SCRATCH}), the arena
   * grows and the op is retried once; this is the only place that happens.
   *
   * @throws NativeException for a non-OK status, with the native message
   * @throws dev.athanor.memory.AllocationFailedException when the arena cannot grow
   */
  public void run(Kernel kernel, KernelArgs args) {
    checkOpen();
    int dev = device.isCuda() ? device.index() : -1;
    int status = kernel.call(args, dev, nativeContext());
    if (status == NativeException.SCRATCH && device.isCuda()) {
      growScratch(NativeKernels.scratchNeeded(), kernel);
      status = kernel.call(args, dev, nativeContext());
    }
    if (status != NativeException.OK) throw new NativeException(status, NativeKernels.lastError());
  }

  private synchronized void growScratch(long needed, Kernel kernel) {
    long have = scratchBytes();
    if (needed <= have) {
      throw new IllegalStateException(kernel.nativeName() + " asked for " + needed + " bytes of scratch; the arena of "
          + this + " already has " + have);
    }
    long bytes = Math.ceilDiv(needed, SCRATCH_GRANULE) * SCRATCH_GRANULE;
    Storage fresh = Storage.allocate(res.compute, bytes);
    Storage old = res.scratch;
    res.scratch = fresh;
    CStruct.of(KernelArgs.CudaCtx.class).write(res.ctx,
        new KernelArgs.CudaCtx(device.index(), res.compute.handle(), fresh.address(), bytes));
    if (old != null) old.close(); // reused in stream order by the compute stream
  }

  /** Waits for the work of every stream of this context, then releases finished asynchronous copies' memory. */
  public void synchronize() {
    checkOpen();
    res.compute.synchronize();
    for (Stream s : res.copies) s.synchronize();
    InFlight.poll();
  }

  public boolean isClosed() {
    return closed.get();
  }

  private void checkOpen() {
    if (closed.get()) throw new IllegalStateException(this + " is closed");
  }

  /** Waits for the streams, gives the scratch arena back and destroys the streams. Idempotent. */
  @Override
  public void close() {
    if (closed.compareAndSet(false, true)) cleanable.clean();
  }

  @Override
  public String toString() {
    return "ExecutionContext(" + device + (implicit ? ", implicit of thread " + owner : "")
        + ", " + res.copies.size() + " copy stream" + (res.copies.size() == 1 ? "" : "s") + ")";
  }
}
