package dev.athanor.runtime;

/**
 * The JNI entry points of the op table ({@code native/jni/jni_NativeKernels.cpp}, registered in
 * {@code JNI_OnLoad}). {@link #run} is the only call an op makes; the others describe the table and the last
 * failure of the calling thread. Raw: {@code args} and {@code ctx} must point at a valid struct of the op and an
 * {@code ath_cuda_ctx} (0 on the CPU); use {@link ExecutionContext#run}.
 */
final class NativeKernels {
  private NativeKernels() {}

  static {
    NativeLibrary.load();
  }

  /** Runs op number {@code op} of the native table on the CPU ({@code device < 0}) or CUDA; returns the status. */
  static native int run(int op, int device, long ctx, long args);

  /** {@code ath_last_error()} of the calling thread. */
  static native String lastError();

  /** {@code ath_scratch_needed()} of the calling thread (after ATH_ERR_SCRATCH). */
  static native long scratchNeeded();

  /** The op table, one line per op in table order: "name struct sizeof". */
  static native String ops();

  /** Every argument struct, one line each: "struct sizeof field:offset:size ...". */
  static native String structs();
}
