package dev.athanor.examples;

import dev.athanor.infer.Generator;
import dev.athanor.infer.SamplingConfig;
import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TextCorpus;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.io.tokenizer.Tokenizer;
import dev.athanor.io.tokenizer.Tokenizers;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeLibrary;
import dev.athanor.tensor.DType;
import dev.athanor.train.Schedule;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.io.IOException;
import java.io.InputStream;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;

/**
 * Athanor used as a library: trains a tiny GPT-2 from scratch for a few steps on a small corpus it writes
 * itself, saves it as a Hugging Face model directory, loads it back and generates from both copies. Runs
 * on a GPU when CUDA is usable, else on the CPU.
 *
 * <p>Before any of that it checks where libathanor came from: it must have been extracted from the
 * {@code dev.athanor:athanor} jar on the class path (byte for byte the jar's
 * {@value NativeLibrary#RESOURCE}), not from a build tree or an override. With
 * {@code -Dexamples.expected.jar=<file>} (the pom passes the installed jar in the local Maven repository)
 * that jar must be exactly this file. Native access must be enabled ({@code --enable-native-access=ALL-UNNAMED}).
 *
 * <p>Exits with status 0 when everything held, 1 otherwise (each failed check is printed).
 *
 * <p>Usage: {@code java --enable-native-access=ALL-UNNAMED -cp <classpath> dev.athanor.examples.TrainAndGenerate [workDir]}
 */
public final class TrainAndGenerate {
  private static final List<String> failures = new ArrayList<>();

  private TrainAndGenerate() {}

  public static void main(String[] args) throws Exception {
    Path work = Path.of(args.length > 0 ? args[0] : "target/run").toAbsolutePath();
    Files.createDirectories(work);
    // Asked before the library loads: in the JDK's default "warn" mode, loading it without the flag prints a
    // warning and then enables native access for the class path.
    check(NativeLibrary.class.getModule().isNativeAccessEnabled(),
        "native access is not enabled for the class path: start the JVM with --enable-native-access=ALL-UNNAMED");

    // Where the native library came from (Cuda.isAvailable() loads it).
    Device device = Cuda.isAvailable() ? Device.cuda(0) : Device.CPU;
    checkNativeLibraryCameFromJar();
    System.out.println("device: " + device + (Cuda.isAvailable() ? "" : " (CUDA unavailable: " + Cuda.unavailableReason() + ")"));

    // A small corpus: a few lines of Java, repeated, so a tiny model learns it within a few dozen steps.
    Path corpus = work.resolve("corpus");
    Files.createDirectories(corpus);
    Files.writeString(corpus.resolve("hello.txt"), """
        public class Hello {
          /** Returns twice the given value. */
          static int twice(int x) { return 2 * x; }
          public static void main(String[] args) { System.out.println(twice(21)); }
        }
        """.repeat(60));

    ModelConfig config = ModelConfig.gpt2(50257, 64, 2, 64, 2);   // vocab, context, layers, width, heads
    int steps = 60, batch = 4, seq = 32;
    // TrainConfig.defaults(steps, batch, seq) is GPT-2 pretraining's recipe (lr 6e-4); a model this small
    // learns faster at a higher rate: lr 3e-3 with 6 warmup steps, cosine decay to 3e-4.
    TrainConfig defaults = TrainConfig.defaults(steps, batch, seq);
    TrainConfig train = new TrainConfig(steps, batch, seq, 1, 3e-3f, 3e-4f, 6, Schedule.COSINE, defaults.weightDecay(),
        defaults.beta1(), defaults.beta2(), defaults.eps(), defaults.gradClip(), defaults.shuffle(), defaults.seed());
    Path modelDir = work.resolve("model");
    Tokenizer tok = Tokenizers.gpt2();                              // GPT-2's BPE (r50k_base)
    int[] prompt = tok.encode("public class Hello {");
    SamplingConfig greedy = new SamplingConfig(0f, 0, 1f, 0L, 24, /* stopAtEos */ false);
    List<Float> losses = new ArrayList<>();
    int[] generated;
    try (Transformer model = Transformer.create(config, device);
        TokenDataset data = TextCorpus.prepare(corpus, tok, TextCorpus.Options.defaults().withCacheDir(work.resolve("tokens")), null);
        Trainer trainer = new Trainer(model, train,
            new DataLoader(data, batch, seq, /* shuffle */ true, /* seed */ 1))) {
      model.initialize(1337);
      System.out.printf("training %,d parameters on %,d tokens: %d steps of %d x %d tokens%n",
          model.parameters().parameterCount(), data.size(), steps, batch, seq);
      while (!trainer.done()) {
        StepResult r = trainer.step();                              // forward, backward, clip, AdamW
        losses.add(r.loss());
        if (r.step() % 10 == 0 || trainer.done()) {
          System.out.printf("  step %3d  loss %.4f  lr %.2e  %,.0f tokens/s%n", r.step(), r.loss(), r.lr(), r.tokensPerSecond());
        }
      }
      HfModelDir.save(modelDir, model.config(), model.weights(), DType.F32);
      generated = new Generator(model).generate(prompt, greedy, null);
    }

    // The loss must have fallen: the mean of the last 5 steps at least 2.0 below the first step's loss
    float first = losses.get(0);
    double lastMean = losses.subList(losses.size() - 5, losses.size()).stream().mapToDouble(Float::doubleValue).average().orElseThrow();
    System.out.printf("loss: first %.4f, mean of the last 5 steps %.4f%n", first, lastMean);
    check(losses.stream().allMatch(l -> Float.isFinite(l)), "a loss is not finite: " + losses);
    check(lastMean < first - 2.0, "the loss did not fall by at least 2.0: " + losses);

    // The saved model: config.json + model.safetensors, loaded back onto the same device.
    check(Files.isRegularFile(modelDir.resolve("config.json")) && Files.isRegularFile(modelDir.resolve("model.safetensors")),
        "no config.json + model.safetensors in " + modelDir);
    int[] reloaded;
    try (Transformer model = HfModelDir.loadModel(modelDir, device)) {
      check(model.config().equals(config), "saved config " + model.config() + " differs from " + config);
      reloaded = new Generator(model).generate(prompt, greedy, null);
    }

    System.out.println("prompt:    " + tok.decode(prompt));
    System.out.println("generated: " + tok.decode(generated).replace("\n", "\\n"));
    System.out.println("reloaded:  " + tok.decode(reloaded).replace("\n", "\\n"));
    check(generated.length == greedy.maxTokens(), "generated " + generated.length + " tokens, asked for " + greedy.maxTokens());
    check(reloaded.length == greedy.maxTokens(), "the reloaded model generated " + reloaded.length + " tokens");
    // The CPU backend is deterministic, so the reloaded copy must decode the same tokens there; on a GPU
    // only report it (reductions may be ordered differently).
    boolean same = Arrays.equals(generated, reloaded);
    if (device.isCpu()) {
      check(same, "the reloaded model generated other tokens than the trained one");
    } else if (!same) {
      System.out.println("note: the reloaded model's greedy tokens differ from the trained model's on " + device);
    }

    if (failures.isEmpty()) {
      System.out.println("OK: trained, saved, reloaded and generated with Athanor as a dependency");
      System.exit(0);
    }
    System.err.println("FAILED:");
    failures.forEach(f -> System.err.println("  - " + f));
    System.exit(1);
  }

  /**
   * libathanor must have been extracted from the jar that holds {@link NativeLibrary}: that class came from
   * a jar file (not a classes directory), no override property is set, and the file that was loaded has
   * the same bytes as the jar's {@value NativeLibrary#RESOURCE}.
   */
  private static void checkNativeLibraryCameFromJar() throws Exception {
    NativeLibrary.load();
    Path loaded = NativeLibrary.loadedFrom();
    URL location = NativeLibrary.class.getProtectionDomain().getCodeSource().getLocation();
    Path jar = Path.of(location.toURI());
    URL resource = NativeLibrary.class.getClassLoader().getResource(NativeLibrary.RESOURCE);
    System.out.println("athanor jar:  " + jar);
    System.out.println("libathanor:   " + loaded + "  (resource " + resource + ")");

    String override = System.getProperty(NativeLibrary.LIBRARY_PATH_PROPERTY);
    check(override == null, "-D" + NativeLibrary.LIBRARY_PATH_PROPERTY + "=" + override + " is set: the library did not come from the jar");
    check(Files.isRegularFile(jar) && jar.getFileName().toString().endsWith(".jar"),
        "dev.athanor classes came from " + jar + ", not from a jar");
    String expected = System.getProperty("examples.expected.jar");
    if (expected != null) {
      check(Files.isRegularFile(Path.of(expected)) && Files.isSameFile(jar, Path.of(expected)),
          "the athanor jar on the class path is " + jar + ", expected the installed " + expected);
    }
    check(resource != null && resource.getProtocol().equals("jar")
            && resource.toString().equals("jar:" + location + "!/" + NativeLibrary.RESOURCE),
        "the class path resource " + NativeLibrary.RESOURCE + " is " + resource + ", not the one in " + jar);
    check(loaded != null && Files.isRegularFile(loaded), "NativeLibrary.loadedFrom() is " + loaded);
    if (loaded == null || !Files.isRegularFile(jar) || !Files.isRegularFile(loaded)) return;

    String inJar;
    long jarBytes;
    try (JarFile jf = new JarFile(jar.toFile())) {
      JarEntry e = jf.getJarEntry(NativeLibrary.RESOURCE);
      if (e == null) {
        check(false, jar + " has no " + NativeLibrary.RESOURCE);
        return;
      }
      try (InputStream in = jf.getInputStream(e)) {
        inJar = sha256(in);
      }
      jarBytes = e.getSize();
    }
    String onDisk;
    try (InputStream in = Files.newInputStream(loaded)) {
      onDisk = sha256(in);
    }
    System.out.printf("sha256:       %s in the jar (%,d bytes), %s loaded%n", inJar.substring(0, 16), jarBytes, onDisk.substring(0, 16));
    check(inJar.equals(onDisk), "the loaded " + loaded + " is not the library inside " + jar);
  }

  private static String sha256(InputStream in) throws IOException {
    try {
      MessageDigest md = MessageDigest.getInstance("SHA-256");
      try (DigestInputStream d = new DigestInputStream(in, md)) {
        d.transferTo(java.io.OutputStream.nullOutputStream());
      }
      return HexFormat.of().formatHex(md.digest());
    } catch (java.security.NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  private static void check(boolean ok, String failure) {
    if (!ok) {
      failures.add(failure);
      System.err.println("check failed: " + failure);
    }
  }
}
