package dev.athanor.nn;

/**
 * A contiguous part of a model, as a pipeline stage runs it: blocks {@code [firstBlock, endBlock)}, with or
 * without the embeddings in front and the head (final norm, output projection, loss) behind. The whole model is
 * {@code new Stage(0, layers, true, true)}. A stage that has the head of a model with tied embeddings but not the
 * embeddings keeps its own copy of the token embedding matrix for the head.
 */
public record Stage(int firstBlock, int endBlock, boolean embedding, boolean head) {
  public Stage {
    if (firstBlock < 0 || endBlock < firstBlock) {
      throw new IllegalArgumentException("stage blocks [" + firstBlock + ", " + endBlock + ") are invalid");
    }
    if (firstBlock == endBlock && !embedding && !head) throw new IllegalArgumentException("a stage needs something to run");
  }

  /** The whole model: every block, the embeddings and the head. */
  public static Stage whole(ModelConfig config) {
    return new Stage(0, config.layers(), true, true);
  }

  public int blocks() {
    return endBlock - firstBlock;
  }

  /** Whether this is the whole model of {@code config}. */
  public boolean isWhole(ModelConfig config) {
    return embedding && head && firstBlock == 0 && endBlock == config.layers();
  }

  @Override
  public String toString() {
    return (embedding ? "embedding + " : "") + "blocks [" + firstBlock + ", " + endBlock + ")" + (head ? " + head" : "");
  }
}
