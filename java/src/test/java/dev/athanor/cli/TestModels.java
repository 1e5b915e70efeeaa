package dev.athanor.cli;

import dev.athanor.io.data.TokenShardWriter;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.params.ParameterStore;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import java.io.IOException;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.function.Consumer;
import java.util.function.UnaryOperator;

/** Small models saved as Hugging Face directories for the command tests. */
final class TestModels {
  private TestModels() {}

  /** A model of {@code c} initialized with {@code seed}, saved to {@code dir}. */
  static Path save(Path dir, ModelConfig c, long seed) {
    return save(dir, c, seed, m -> {});
  }

  /** A model of {@code c} initialized with {@code seed}, changed by {@code edit}, saved to {@code dir}. */
  static Path save(Path dir, ModelConfig c, long seed, Consumer<Transformer> edit) {
    try (Transformer m = Transformer.create(c, Device.CPU)) {
      m.initialize(seed);
      edit.accept(m);
      HfModelDir.save(dir, c, m.weights(), DType.F32);
    }
    return dir;
  }

  /**
   * A token shard at {@code file} of 4000 tokens below {@code vocab}, each a seeded step from the previous one (a
   * pattern a small model learns), as the command tests train on.
   */
  static Path shard(Path file, int vocab) throws IOException {
    SplittableRandom r = new SplittableRandom(42);
    try (TokenShardWriter w = TokenShardWriter.create(file, vocab)) {
      int prev = 1;
      for (int i = 0; i < 4000; i++) w.write(prev = (prev * 7 + r.nextInt(4)) % vocab);
    }
    return file;
  }

  /** Replaces the values of parameter {@code name} of {@code m} by {@code f} of them. */
  static void edit(Transformer m, String name, UnaryOperator<float[]> f) {
    for (ParameterStore.Param p : m.parameters().list()) {
      if (p.spec().name().equals(name)) p.master().copyFrom(f.apply(p.master().toFloatArray()));
    }
  }
}
