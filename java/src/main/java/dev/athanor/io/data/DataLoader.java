package dev.athanor.io.data;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Cuts a {@link TokenDataset} into next-token-prediction batches of {@code batch} rows × {@code seq} tokens.
 *
 * <ul>
 *   <li><b>Sequential</b> ({@code shuffle = false}, llm.c's loader): each step reads the next
 *       {@code B·T + 1} contiguous tokens of the stream from the current position {@code p}; inputs are
 *       {@code tokens[p, p + B·T)}, targets {@code tokens[p + 1, p + B·T + 1)}, both laid out B × T row-major;
 *       then {@code p = (p + B·T) mod size}. Reads that run past the end continue at position 0.
 *   <li><b>Shuffled</b>: the stream is cut into {@code (size - 1) / T} windows of {@code T + 1} tokens, window
 *       {@code w} covering {@code [w·T, w·T + T + 1)}. Each epoch visits every window once, in a permutation
 *       drawn by a Fisher-Yates shuffle from a {@link SplittableRandom} seeded with a mix of the seed and the
 *       epoch number; each batch takes the next B windows as its rows (row r: inputs = window[0, T),
 *       targets = window[1, T + 1)), continuing into the next epoch's permutation when one runs out.
 * </ul>
 *
 * <p>{@link #state()} and {@link #restore(State)} resume a run exactly. Not thread-safe; the dataset is not
 * owned (closing it is the caller's business).
 */
public final class DataLoader {
  /** One batch: {@code inputs} and {@code targets} are {@code batch × seq} token ids, row-major. */
  public record Batch(int[] inputs, int[] targets, int batch, int seq) {
    /** The number of positions, {@code batch × seq}. */
    public int tokens() {
      return batch * seq;
    }
  }

  /**
   * Where a loader is, to resume exactly.
   *
   * @param position sequential mode: the stream position of the next batch's first token (0 when shuffled)
   * @param epoch completed passes over the data (sequential: wrap-arounds; shuffled: finished permutations)
   * @param cursor shuffled mode: the index into the current epoch's permutation of the next window (0 when
   *     sequential)
   * @param seed the shuffle seed
   * @param shuffle whether windows are shuffled
   * @param batch rows per batch
   * @param seq tokens per row
   * @param dataTokens the size of the dataset the state belongs to (checked on restore)
   */
  public record State(long position, long epoch, long cursor, long seed, boolean shuffle, int batch, int seq,
      long dataTokens) {}

  private final TokenDataset data;
  private final int batch;
  private final int seq;
  private final boolean shuffle;
  private final long seed;
  private final long size;
  private final int windows;
  private final int[] scratch;

  private long position;
  private long epoch;
  private int cursor;
  private int[] permutation;  // of the current epoch (shuffled mode)
  private int replica;        // data parallel: this replica's rank and the replica count (setReplica)
  private int replicas = 1;

  /**
   * A loader at the start of the data (position 0, epoch 0).
   *
   * @throws IllegalArgumentException if {@code batch} or {@code seq} is not positive, {@code batch × seq}
   *     overflows, or the data has fewer than {@code seq + 1} tokens
   */
  public DataLoader(TokenDataset data, int batch, int seq, boolean shuffle, long seed) {
    if (data == null) throw new IllegalArgumentException("data loader: dataset is null");
    if (batch <= 0) throw new IllegalArgumentException("data loader: batch must be positive, got " + batch);
    if (seq <= 0) throw new IllegalArgumentException("data loader: seq must be positive, got " + seq);
    if ((long) batch * seq > Integer.MAX_VALUE - 8) {
      throw new IllegalArgumentException("data loader: batch x seq = " + ((long) batch * seq)
          + " tokens is too large for one batch");
    }
    this.size = data.size();
    if (size < (long) seq + 1) {
      throw new IllegalArgumentException("data loader: seq " + seq + " needs at least " + ((long) seq + 1)
          + " tokens of data but " + data.files() + " holds only " + size);
    }
    long w = (size - 1) / seq;
    if (shuffle && w > Integer.MAX_VALUE - 8) {
      throw new IllegalArgumentException("data loader: " + w + " windows of seq " + seq
          + " are too many to shuffle; use a longer seq");
    }
    this.data = data;
    this.batch = batch;
    this.seq = seq;
    this.shuffle = shuffle;
    this.seed = seed;
    this.windows = (int) Math.min(w, Integer.MAX_VALUE);
    this.scratch = shuffle ? new int[seq + 1] : new int[batch * seq + 1];
  }

  /** Tokens per batch, {@code batch × seq}. */
  public long tokensPerBatch() {
    return (long) batch * seq;
  }

  /** Rows per batch. */
  public int batch() {
    return batch;
  }

  /** Tokens per row. */
  public int seq() {
    return seq;
  }

  /** Whether windows are shuffled. */
  public boolean shuffle() {
    return shuffle;
  }

  /** The dataset. */
  public TokenDataset data() {
    return data;
  }

  /**
   * Makes this loader one of {@code replicas} data-parallel replicas: from now on {@link #next()} returns the {@code
   * rank}-th of each group of {@code replicas} consecutive batches of the stream and steps over the others without
   * reading them. Replicas 0 .. replicas-1 together read exactly the batches of one loader, in its order, and {@link
   * #state()} (taken between groups) is that loader's after as many batches, so checkpoints resume with any replica
   * count.
   */
  public void setReplica(int rank, int replicas) {
    if (replicas < 1 || rank < 0 || rank >= replicas) {
      throw new IllegalArgumentException("data loader: replica " + rank + " of " + replicas + "; need replicas >= 1 and 0 <= rank < replicas");
    }
    this.replica = rank;
    this.replicas = replicas;
  }

  /** This loader's replica rank ({@link #setReplica}); 0 by default. */
  public int replica() {
    return replica;
  }

  /** The number of replicas ({@link #setReplica}); 1 by default. */
  public int replicas() {
    return replicas;
  }

  /** The next batch (fresh arrays): with replicas, this replica's batch of the next group. */
  public Batch next() {
    skip(replica);
    Batch b = read();
    skip(replicas - 1 - replica);
    return b;
  }

  /** Moves past {@code n} batches without reading them. */
  private void skip(int n) {
    for (int i = 0; i < n; i++) {
      if (!shuffle) {
        long next = position + (long) batch * seq;
        epoch += next / size;
        position = next % size;
      } else {
        for (int r = 0; r < batch; r++) {
          if (++cursor == windows) {
            cursor = 0;
            epoch++;
            permutation = null;
          }
        }
      }
    }
  }

  private Batch read() {
    int bt = batch * seq;
    int[] inputs = new int[bt];
    int[] targets = new int[bt];
    if (!shuffle) {
      readWrapped(position, scratch, bt + 1);
      System.arraycopy(scratch, 0, inputs, 0, bt);
      System.arraycopy(scratch, 1, targets, 0, bt);
      long next = position + bt;
      epoch += next / size;
      position = next % size;
    } else {
      for (int r = 0; r < batch; r++) {
        if (permutation == null) permutation = permutation(seed, epoch, windows);
        long start = (long) permutation[cursor] * seq;
        data.read(start, scratch, 0, seq + 1);
        System.arraycopy(scratch, 0, inputs, r * seq, seq);
        System.arraycopy(scratch, 1, targets, r * seq, seq);
        if (++cursor == windows) {
          cursor = 0;
          epoch++;
          permutation = null;
        }
      }
    }
    return new Batch(inputs, targets, batch, seq);
  }

  /** Reads {@code n} tokens starting at {@code pos}, continuing at 0 whenever the end is reached. */
  private void readWrapped(long pos, int[] dst, int n) {
    int off = 0;
    while (off < n) {
      int k = (int) Math.min(n - off, size - pos);
      data.read(pos, dst, off, k);
      off += k;
      pos = 0;
    }
  }

  /** The window order of one epoch: a seeded Fisher-Yates shuffle of {@code 0 .. windows - 1}. */
  static int[] permutation(long seed, long epoch, int windows) {
    int[] p = new int[windows];
    for (int i = 0; i < windows; i++) p[i] = i;
    SplittableRandom rnd = new SplittableRandom(mix(seed, epoch));
    for (int i = windows - 1; i > 0; i--) {
      int j = rnd.nextInt(i + 1);
      int t = p[i];
      p[i] = p[j];
      p[j] = t;
    }
    return p;
  }

  /** A 64-bit mix of seed and epoch (murmur3 finaliser over a golden-ratio combination). */
  static long mix(long seed, long epoch) {
    long z = seed ^ (epoch + 1) * 0x9E3779B97F4A7C15L;
    z = (z ^ (z >>> 33)) * 0xff51afd7ed558ccdL;
    z = (z ^ (z >>> 33)) * 0xc4ceb9fe1a85ec53L;
    return z ^ (z >>> 33);
  }

  /** The current state (before the next batch). */
  public State state() {
    return new State(shuffle ? 0 : position, epoch, shuffle ? cursor : 0, seed, shuffle, batch, seq, size);
  }

  /**
   * Continues from a state taken by {@link #state()} on a loader with the same settings over the same data.
   *
   * @throws IllegalArgumentException listing every setting that differs, or if the position/cursor is out
   *     of range
   */
  public void restore(State s) {
    if (s == null) throw new IllegalArgumentException("data loader: state is null");
    List<String> diffs = new ArrayList<>();
    if (s.shuffle() != shuffle) diffs.add("shuffle " + s.shuffle() + " vs " + shuffle);
    if (s.batch() != batch) diffs.add("batch " + s.batch() + " vs " + batch);
    if (s.seq() != seq) diffs.add("seq " + s.seq() + " vs " + seq);
    if (s.seed() != seed) diffs.add("seed " + s.seed() + " vs " + seed);
    if (s.dataTokens() != size) diffs.add("data size " + s.dataTokens() + " vs " + size + " tokens");
    if (!diffs.isEmpty()) {
      throw new IllegalArgumentException("data loader: cannot restore a state saved with different settings ("
          + String.join(", ", diffs) + "; saved vs this loader)");
    }
    if (s.epoch() < 0) throw new IllegalArgumentException("data loader: state epoch is negative: " + s.epoch());
    if (shuffle) {
      if (s.cursor() < 0 || s.cursor() >= windows) {
        throw new IllegalArgumentException("data loader: state cursor " + s.cursor() + " is outside [0, "
            + windows + ")");
      }
      if (s.position() != 0) {
        throw new IllegalArgumentException("data loader: a shuffled state has position 0, got " + s.position());
      }
    } else {
      if (s.position() < 0 || s.position() >= size) {
        throw new IllegalArgumentException("data loader: state position " + s.position() + " is outside [0, "
            + size + ")");
      }
      if (s.cursor() != 0) {
        throw new IllegalArgumentException("data loader: a sequential state has cursor 0, got " + s.cursor());
      }
    }
    this.position = s.position();
    this.epoch = s.epoch();
    this.cursor = (int) s.cursor();
    this.permutation = null;
  }
}
