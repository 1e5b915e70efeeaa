package dev.athanor.cli;

import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;

/**
 * The data-parallel communication thread's flags, {@code --overlap} and {@code --bucket-mb}, as {@code train} and
 * {@code bench --mode train} take them (each command's parallel option group extends this class, so both parse and
 * check them alike).
 */
class OverlapOptions {
  @Option(names = "--overlap", paramLabel = "BOOL", arity = "1", defaultValue = "on", converter = Options.Bool.class,
      description = "with --dp (no --tp or --pp): ZeRO 0 and 1 all-reduce the step's gradient in buckets during the "
          + "backward of its last micro-batch, each bucket as soon as the backward has finished its units (the head first), on "
          + "a communication thread (CUDA, ZeRO 0, with ATHANOR_CUDA_STREAM_OVERLAP=1: a communication stream), instead of all at once after it; ZeRO 2 folds each unit's gradient into the owners' "
          + "shards on that thread while the backward goes on with the next units, instead of on the training thread; with "
          + "--zero 3, gather the next unit's weights on that thread while the current unit computes, instead of when it is "
          + "about to run. The same bits either way (deterministic mode). on or off. Default: ${DEFAULT-VALUE}")
  boolean overlap = true;

  @Option(names = "--bucket-mb", paramLabel = "MIB", defaultValue = "25",
      description = "with --overlap on (ZeRO 0 and 1): the most gradient (MiB) one bucket of consecutive units holds (a larger "
          + "unit is a bucket of its own); smaller buckets start sooner, larger ones pay the collectives' latency fewer times. "
          + "Default: ${DEFAULT-VALUE}")
  double bucketMb = 25;

  /** The overlapped reduction's bucket size in bytes (--bucket-mb), 0 with --overlap off; a usage error unless positive. */
  long bucketBytes(CommandSpec spec) {
    if (!(bucketMb > 0) || bucketMb * (1 << 20) > Long.MAX_VALUE / 2) {
      throw Options.usage(spec, "--bucket-mb " + bucketMb + ": expected a positive size in MiB, such as 25 or 0.5");
    }
    return overlap ? Math.max(1, Math.round(bucketMb * (1 << 20))) : 0;
  }
}
