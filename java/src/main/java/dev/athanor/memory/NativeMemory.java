package dev.athanor.memory;

import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.Event;
import dev.athanor.runtime.NativeException;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.runtime.Stream;

/** The real {@link RawMemory}s: device memory of one CUDA device, and page-locked host memory. */
final class NativeMemory {
  private NativeMemory() {}

  /** Markers are pooled CUDA events; CPU streams need none (their work is synchronous). */
  private abstract static class Events implements RawMemory {
    @Override
    public Object record(Stream stream) {
      return stream.device().isCuda() ? EventPool.recordOn(stream) : null;
    }

    @Override
    public boolean isComplete(Object marker) {
      return ((Event) marker).isComplete();
    }

    @Override
    public void release(Object marker) {
      EventPool.release((Event) marker);
    }
  }

  /** cudaMalloc / cudaFree on one device. */
  static final class CudaDevice extends Events {
    private final Device device;

    CudaDevice(Device device) {
      this.device = device;
    }

    @Override
    public long allocate(long bytes) {
      return NativeRuntime.cudaMalloc(device.index(), bytes);
    }

    @Override
    public void free(long address) {
      NativeRuntime.cudaFree(device.index(), address);
    }

    @Override
    public void synchronize() {
      Cuda.synchronize(device.index());
    }

    @Override
    public boolean pinned() {
      return false;
    }

    @Override
    public String pressure() {
      try {
        long[] info = NativeRuntime.cudaMemGetInfo(device.index());
        return "; the driver reports " + MemoryManager.formatBytes(info[0]) + " free of "
            + MemoryManager.formatBytes(info[1]);
      } catch (RuntimeException e) {
        return "";
      }
    }
  }

  /**
   * cudaHostAlloc / cudaHostFree; without CUDA, ordinary page-aligned host memory (still accounted as
   * HOST_PINNED, so code that stages through pinned buffers runs unchanged on CPU-only machines).
   */
  static final class PinnedHost extends Events {
    private final boolean cuda = Cuda.isAvailable();

    @Override
    public long allocate(long bytes) {
      if (cuda) return NativeRuntime.cudaHostAlloc(bytes);
      try {
        return NativeRuntime.hostAllocAligned(bytes, Storage.PAGE);
      } catch (NativeException e) {
        throw new NativeException(NativeException.OOM, "host memory for HOST_PINNED: " + e.getMessage());
      }
    }

    @Override
    public void free(long address) {
      if (cuda) NativeRuntime.cudaHostFree(address);
      else NativeRuntime.hostFreeAligned(address);
    }

    @Override
    public void synchronize() {
      for (int d = 0; d < Cuda.deviceCount(); d++) Cuda.synchronize(d);
    }

    @Override
    public boolean pinned() {
      return cuda;
    }
  }
}
