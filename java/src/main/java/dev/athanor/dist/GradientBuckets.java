package dev.athanor.dist;

import dev.athanor.params.Range;
import dev.athanor.params.Unit;
import java.util.ArrayList;
import java.util.List;

/**
 * The buckets of an overlapped gradient reduction: the model's units (embeddings, blocks, head), whose flat element
 * ranges lie one after the other in index order, grouped in the order their backward ends (the head first, the
 * embeddings last) into runs of consecutive units of at most {@code capBytes} of gradient each (a unit larger than the
 * cap is a bucket of its own). A bucket is therefore one contiguous flat range, and it is complete when the last of its
 * units to finish the backward (its lowest index) does.
 *
 * @param buckets in the order they complete: bucket 0 holds the head
 * @param bucketOf for each unit index, the bucket holding it
 */
public record GradientBuckets(List<Bucket> buckets, int[] bucketOf) {
  /** One bucket: the units {@code [firstUnit, endUnit)} (by index) and their flat elements. */
  public record Bucket(int index, int firstUnit, int endUnit, Range elements) {
    /** Its units' count. */
    public int units() {
      return endUnit - firstUnit;
    }
  }

  public GradientBuckets {
    buckets = List.copyOf(buckets);
    bucketOf = bucketOf.clone();
  }

  /**
   * Groups {@code units} (a store's units, in index order, each range starting where the previous one ends) into
   * buckets of at most {@code capBytes} bytes of gradient at {@code elementBytes} bytes an element.
   */
  public static GradientBuckets of(List<Unit> units, int elementBytes, long capBytes) {
    if (units == null || units.isEmpty()) throw new IllegalArgumentException("no units to put into buckets");
    if (elementBytes < 1) throw new IllegalArgumentException("element size " + elementBytes + " must be >= 1 byte");
    if (capBytes < 1) throw new IllegalArgumentException("bucket cap " + capBytes + " bytes must be >= 1");
    for (int i = 0; i < units.size(); i++) {
      Unit u = units.get(i);
      if (u.index() != i) throw new IllegalArgumentException("unit " + u.name() + " has index " + u.index() + ", expected " + i);
      if (i > 0 && u.elements().start() != units.get(i - 1).elements().end()) {
        throw new IllegalArgumentException("unit " + u.name() + " starts at element " + u.elements().start() + ", not where "
            + units.get(i - 1).name() + " ends (" + units.get(i - 1).elements().end() + ")");
      }
    }
    List<Bucket> out = new ArrayList<>();
    int[] of = new int[units.size()];
    int end = units.size();  // the current bucket is [first, end)
    long bytes = 0;
    for (int u = units.size() - 1; u >= 0; u--) {
      long b = units.get(u).elements().length() * elementBytes;
      if (u + 1 < end && bytes + b > capBytes) {  // the bucket is not empty and this unit would overflow it
        out.add(bucket(units, out.size(), u + 1, end));
        end = u + 1;
        bytes = 0;
      }
      bytes += b;
    }
    out.add(bucket(units, out.size(), 0, end));
    for (Bucket k : out) for (int u = k.firstUnit(); u < k.endUnit(); u++) of[u] = k.index();
    return new GradientBuckets(out, of);
  }

  private static Bucket bucket(List<Unit> units, int index, int first, int end) {
    return new Bucket(index, first, end, new Range(units.get(first).elements().start(), units.get(end - 1).elements().end()));
  }
}
