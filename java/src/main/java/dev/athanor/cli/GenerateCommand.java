package dev.athanor.cli;

import dev.athanor.infer.Generator;
import dev.athanor.infer.SamplingConfig;
import dev.athanor.io.tokenizer.StreamDecoder;
import dev.athanor.io.tokenizer.Tokenizer;
import dev.athanor.nn.Transformer;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;

/** {@code athanor generate}: continue a prompt with a saved model, streaming the text as it is produced. */
final class GenerateCommand {
  static final Set<String> FLAGS = Set.of("model", "prompt", "max-tokens", "temperature", "top-k", "top-p", "seed",
      "device", "no-stop");

  private GenerateCommand() {}

  static String run(List<String> args, PrintStream out) {
    Flags f = new Flags("generate", args, FLAGS, Set.of("no-stop"));
    Path dir = Path.of(f.required("model"));
    String prompt = f.required("prompt");
    SamplingConfig sc = new SamplingConfig(f.number("temperature", 0.8f), f.integer("top-k", 40), f.number("top-p", 0.95f),
        f.longValue("seed", 0), f.integer("max-tokens", 200), !f.bool("no-stop", false));
    try (Transformer model = Models.load(dir, Models.device(f.str("device", "auto")))) {
      Tokenizer tok = Models.tokenizer(dir, model.config());
      return generate(model, tok, prompt, sc, out);
    }
  }

  /** Streams the prompt and its continuation to {@code out}; returns the generated text. */
  static String generate(Transformer model, Tokenizer tok, String prompt, SamplingConfig sc, PrintStream out) {
    int[] ids = Models.withBos(model.config(), tok, tok.encode(prompt));
    if (ids.length == 0) {
      if (tok.bosToken().isEmpty() && tok.eosToken().isEmpty()) throw new IllegalArgumentException("--prompt is empty");
      ids = new int[] {tok.bosToken().orElse(tok.eosToken().getAsInt())};
    }
    StreamDecoder dec = tok.streamDecoder();
    StringBuilder text = new StringBuilder();
    out.print(prompt);
    out.flush();
    int eos = model.config().eosTokenId();
    new Generator(model).generate(ids, sc, (s, t) -> {
      if (t == eos && sc.stopAtEos()) return;
      String piece = dec.push(t);
      text.append(piece);
      out.print(piece);
      out.flush();
    });
    String rest = dec.flush();
    text.append(rest);
    out.println(rest);
    return text.toString();
  }
}
