package dev.athanor.nn;

import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;

/**
 * Tensors allocated together and freed together (a block's activations, a stage's workspace, a decoding step's
 * buffers): each is detached from any open {@link dev.athanor.tensor.Scope} and owned by the group, which
 * closes them in reverse order.
 */
abstract class TensorGroup implements AutoCloseable {
  private final List<Tensor> owned = new ArrayList<>();

  /** Takes ownership of {@code t} (a buffer or a view of one) and returns it. */
  final Tensor own(Tensor t) {
    owned.add(t.detach());
    return t;
  }

  /** The buffers themselves, one per allocation (views excluded), e.g. for a hook that spills activations. */
  public List<Tensor> buffers() {
    List<Tensor> b = new ArrayList<>();
    Set<Object> seen = Collections.newSetFromMap(new IdentityHashMap<>());
    for (Tensor t : owned) if (seen.add(t.storage())) b.add(t);  // a buffer is owned before its views
    return b;
  }

  @Override
  public void close() {
    for (int i = owned.size() - 1; i >= 0; i--) owned.get(i).close();
    owned.clear();
  }
}
