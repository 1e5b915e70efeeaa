package dev.athanor.ops;

/** Closing several resources: every one is closed even when an earlier close throws. */
final class Closing {
  private Closing() {}

  /** Closes each non-null resource in order; rethrows the first failure with later ones suppressed. */
  static void closeAll(AutoCloseable... resources) {
    RuntimeException first = null;
    for (AutoCloseable r : resources) {
      if (r == null) continue;
      try {
        r.close();
      } catch (Exception e) {
        RuntimeException re = e instanceof RuntimeException x ? x : new IllegalStateException("close failed", e);
        if (first == null) first = re;
        else first.addSuppressed(re);
      }
    }
    if (first != null) throw first;
  }

  /** Closes the resources after a failure, adding any close failure to {@code failure}; returns it. */
  static RuntimeException closeAfter(RuntimeException failure, AutoCloseable... resources) {
    try {
      closeAll(resources);
    } catch (RuntimeException e) {
      failure.addSuppressed(e);
    }
    return failure;
  }
}
