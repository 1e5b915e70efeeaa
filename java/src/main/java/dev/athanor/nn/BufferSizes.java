package dev.athanor.nn;

import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;

/**
 * The bytes a group of buffers takes from a tier's budget, summed exactly ({@link ArithmeticException} on overflow):
 * each buffer as the allocator reserves it ({@link MemoryManager#reservedSize}). The size methods next to the
 * constructors that allocate ({@code BlockActs.bytes}, {@code Workspace.activationBytes}, {@code KvCache.bytes}, ...)
 * add the same shapes as those constructors, for {@link Footprint}; {@code FootprintTest} checks that they agree.
 */
final class BufferSizes {
  private final Tier tier;
  private final long align;
  private long total;

  /** Buffers in the default tier of {@code device}: DEVICE for CUDA, HOST for the CPU. */
  BufferSizes(Device device) {
    this(device.isCuda() ? Tier.DEVICE : Tier.HOST);
  }

  BufferSizes(Tier tier) {
    this(tier, 1);
  }

  /** Buffers in {@code tier}, each rounded up to a multiple of {@code align} bytes (e.g. laid out in a file for O_DIRECT). */
  BufferSizes(Tier tier, long align) {
    if (align < 1) throw new IllegalArgumentException("align must be >= 1, got " + align);
    this.tier = tier;
    this.align = align;
  }

  /** Adds one buffer of {@code shape}. */
  BufferSizes add(DType dt, long... shape) {
    return add(1, dt, shape);
  }

  /** Adds {@code count} buffers of {@code shape}. */
  BufferSizes add(long count, DType dt, long... shape) {
    long numel = 1;
    for (long s : shape) numel = Math.multiplyExact(numel, s);
    long one = MemoryManager.reservedSize(tier, Math.multiplyExact(numel, (long) dt.byteSize()));
    one = Math.multiplyExact(Math.ceilDiv(one, align), align);
    total = Math.addExact(total, Math.multiplyExact(count, one));
    return this;
  }

  /** Adds {@code count} times bytes already summed (e.g. another group's). */
  BufferSizes add(long count, long bytes) {
    total = Math.addExact(total, Math.multiplyExact(count, bytes));
    return this;
  }

  /** The rounding of each buffer (1: none). */
  long align() {
    return align;
  }

  long total() {
    return total;
  }
}
