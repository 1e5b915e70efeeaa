package dev.athanor.nn;

/**
 * The decoder families one {@link ModelConfig} can describe.
 *
 * <ul>
 *   <li>{@link #GPT2}: LayerNorm with bias, GELU (tanh) MLP of width {@code intermediate}, learned absolute
 *       positions, biases on every linear layer, output head tied to the token embedding. Linear weights are
 *       stored as Hugging Face's {@code Conv1D} does: (in, out).
 *   <li>{@link #LLAMA}: RMSNorm without bias, SwiGLU MLP (gate, up, down), rotary positions (rotate-half
 *       convention) with base {@code ropeTheta}, grouped-query attention with {@code kvHeads} key/value heads,
 *       no biases, head tied or untied. Linear weights are stored as {@code nn.Linear} does: (out, in).
 * </ul>
 */
public enum Family {
  GPT2("gpt2"),
  LLAMA("llama");

  private final String hfModelType;

  Family(String hfModelType) {
    this.hfModelType = hfModelType;
  }

  /** The {@code model_type} of this family in a Hugging Face {@code config.json}. */
  public String hfModelType() {
    return hfModelType;
  }

  /** The family whose {@code model_type} is {@code type}; throws naming the supported ones otherwise. */
  public static Family fromHfModelType(String type) {
    for (Family f : values()) {
      if (f.hfModelType.equals(type)) return f;
    }
    throw new IllegalArgumentException("unsupported model_type \"" + type + "\"; supported: gpt2, llama");
  }
}
