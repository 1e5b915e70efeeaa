package dev.athanor.runtime;

/**
 * A non-OK {@code ath_status} returned by libathanor, with the native message ({@code ath_last_error()}).
 * Constructed by the JNI layer (native/jni/jni_onload.cpp: {@code (ILjava/lang/String;)V}); keep that
 * constructor.
 */
public class NativeException extends AthanorException {
  /** The {@code ath_status} codes of native/include/athanor/athanor.h. */
  public static final int OK = 0, INVALID = 1, UNSUPPORTED = 2, CUDA = 3, OOM = 4, IO = 5, INTERNAL = 6, SCRATCH = 7;

  private final int status;
  private final String detail;

  public NativeException(int status, String message) {
    super(statusName(status) + ": " + message);
    this.status = status;
    this.detail = message;
  }

  /** The native message without the status name (for people; the status is in {@link #status()}). */
  public String detail() {
    return detail;
  }

  /** The {@code ath_status} code. */
  public int status() {
    return status;
  }

  /** The symbolic name of an {@code ath_status} code, e.g. "ATH_ERR_OOM". */
  public static String statusName(int status) {
    return switch (status) {
      case OK -> "ATH_OK";
      case INVALID -> "ATH_ERR_INVALID";
      case UNSUPPORTED -> "ATH_ERR_UNSUPPORTED";
      case CUDA -> "ATH_ERR_CUDA";
      case OOM -> "ATH_ERR_OOM";
      case IO -> "ATH_ERR_IO";
      case INTERNAL -> "ATH_ERR_INTERNAL";
      case SCRATCH -> "ATH_ERR_SCRATCH";
      default -> "ath_status(" + status + ")";
    };
  }
}
