package dev.athanor.nn;

import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.tensor.Tensor;

/**
 * One parameter as the layer code uses it: {@code w()} its weights in the compute dtype, {@code g()} its FP32
 * gradient (null while the store has no gradient buffer, e.g. for inference). The views are looked up in the
 * {@link ParameterStore} at each use (an array read), not kept: when offload pages a unit's weights or gradients
 * in and out of host windows ({@link ParameterStore#map}), the layer code reads whatever window is mapped now.
 */
final class Weight {
  private final ParameterStore store;
  private final int index;

  private Weight(ParameterStore store, int index) {
    this.store = store;
    this.index = index;
  }

  static Weight of(ParameterStore store, String name) {
    return new Weight(store, store.indexOf(name));
  }

  /** The weights in the compute dtype, or null for {@link #NONE}. */
  Tensor w() {
    return store == null ? null : store.view(Role.WEIGHT, index);
  }

  /** The FP32 gradient, or null for {@link #NONE} and while the store has no gradient buffer. */
  Tensor g() {
    return store == null || !store.has(Role.GRAD) ? null : store.view(Role.GRAD, index);
  }

  /** An absent parameter (e.g. GPT-2's position embeddings in a Llama model). */
  static final Weight NONE = new Weight(null, -1);
}
