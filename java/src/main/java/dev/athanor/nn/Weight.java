package dev.athanor.nn;

import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.tensor.Tensor;

/**
 * One parameter as the layer code uses it, resolved once from a {@link ParameterStore}: {@code w} its weights in
 * the compute dtype, {@code g} its FP32 gradient (null while the store has no gradient buffer, e.g. for inference).
 */
record Weight(Tensor w, Tensor g) {
  static Weight of(ParameterStore store, String name) {
    int i = store.indexOf(name);
    return new Weight(store.view(Role.WEIGHT, i), store.has(Role.GRAD) ? store.view(Role.GRAD, i) : null);
  }

  /** An absent parameter (e.g. GPT-2's position embeddings in a Llama model). */
  static final Weight NONE = new Weight(null, null);
}
