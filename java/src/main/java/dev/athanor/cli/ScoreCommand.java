package dev.athanor.cli;

import dev.athanor.io.data.TokenFiles;
import dev.athanor.nn.Transformer;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * {@code athanor score}: the log-probability a model gives each next token of a sequence, and their mean
 * loss, as JSON. Sequences longer than the context are scored in consecutive windows of the context length
 * (each window's first token is context only, as in llm.c's evaluation).
 */
final class ScoreCommand {
  static final Set<String> FLAGS = Set.of("model", "tokens", "text", "device");

  private ScoreCommand() {}

  static void run(List<String> args, PrintStream out) {
    Flags f = new Flags("score", args, FLAGS, Set.of());
    Path dir = Path.of(f.required("model"));
    if (f.has("tokens") == f.has("text")) throw new IllegalArgumentException("give exactly one of --tokens FILE and --text TEXT");
    try (Transformer model = Models.load(dir, Models.device(f.str("device", "auto")))) {
      int[] ids = f.has("tokens") ? TokenFiles.readIds(Path.of(f.required("tokens")))
          : textIds(model, Models.tokenizer(dir, model.config()), f.required("text"));
      if (ids.length < 2) throw new IllegalArgumentException("need at least 2 tokens to score, got " + ids.length);
      float[] logprobs = score(model, ids);
      double sum = 0;
      for (float lp : logprobs) sum -= lp;
      StringBuilder sb = new StringBuilder();
      sb.append("{\"tokens\":").append(ids.length).append(",\"scored\":").append(logprobs.length);
      sb.append(",\"mean_loss\":").append(String.format(Locale.ROOT, "%.6f", sum / logprobs.length));
      sb.append(",\"logprobs\":[");
      for (int i = 0; i < logprobs.length; i++) sb.append(i == 0 ? "" : ",").append(logprobs[i]);
      sb.append("]}");
      out.println(sb);
    }
  }

  private static int[] textIds(Transformer model, dev.athanor.io.tokenizer.Tokenizer tok, String text) {
    return Models.withBos(model.config(), tok, tok.encode(text));
  }

  /** log p(ids[i+1] | ids[..i]) for every scored position, window by window. */
  static float[] score(Transformer model, int[] ids) {
    int ctx = model.config().maxSeqLen();
    float[] result = new float[ids.length - 1];
    int done = 0;
    for (int start = 0; start < ids.length - 1; start += ctx) {
      int len = Math.min(ctx, ids.length - 1 - start);
      int[] in = Arrays.copyOfRange(ids, start, start + len);
      int[] tg = Arrays.copyOfRange(ids, start + 1, start + 1 + len);
      model.forward(in, tg, 1, len);
      float[] losses = model.tokenLosses();
      for (int i = 0; i < len; i++) result[done++] = -losses[i];
    }
    return result;
  }
}
