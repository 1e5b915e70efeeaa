package dev.athanor.train.checkpoint;

import com.google.gson.Gson;
import com.google.gson.JsonObject;
import dev.athanor.io.data.DataLoader;
import dev.athanor.train.Schedule;
import dev.athanor.train.TrainConfig;
import java.nio.charset.StandardCharsets;
import java.util.zip.CRC32C;

/** JSON forms of the configs and states a checkpoint manifest holds. */
final class Manifests {
  /** The manifest's own checksum: the CRC32C of the manifest's other members (format version 2 on). */
  static final String CHECKSUM = "manifest_crc32c";

  private Manifests() {}

  /**
   * The checksum of manifest {@code m} as 8 hex digits: the CRC32C of its compact JSON (Gson's, members in the order
   * written, numbers as written) without the {@link #CHECKSUM} member. Layout and whitespace do not count; any change
   * of a name or value does.
   */
  static String checksum(JsonObject m) {
    JsonObject rest = m.deepCopy();
    rest.remove(CHECKSUM);
    CRC32C c = new CRC32C();
    c.update(new Gson().toJson(rest).getBytes(StandardCharsets.UTF_8));
    return String.format("%08x", c.getValue());
  }

  static JsonObject trainConfig(TrainConfig c) {
    JsonObject o = new JsonObject();
    o.addProperty("steps", c.steps());
    o.addProperty("batch", c.batch());
    o.addProperty("seq", c.seq());
    o.addProperty("accum", c.accum());
    o.addProperty("lr", c.lr());
    o.addProperty("min_lr", c.minLr());
    o.addProperty("warmup", c.warmup());
    o.addProperty("schedule", c.schedule().name());
    o.addProperty("weight_decay", c.weightDecay());
    o.addProperty("beta1", c.beta1());
    o.addProperty("beta2", c.beta2());
    o.addProperty("eps", c.eps());
    o.addProperty("grad_clip", c.gradClip());
    o.addProperty("shuffle", c.shuffle());
    o.addProperty("seed", c.seed());
    return o;
  }

  static TrainConfig trainConfig(JsonObject o) {
    return new TrainConfig(o.get("steps").getAsInt(), o.get("batch").getAsInt(), o.get("seq").getAsInt(),
        o.get("accum").getAsInt(), o.get("lr").getAsFloat(), o.get("min_lr").getAsFloat(), o.get("warmup").getAsInt(),
        Schedule.valueOf(o.get("schedule").getAsString()), o.get("weight_decay").getAsFloat(), o.get("beta1").getAsFloat(),
        o.get("beta2").getAsFloat(), o.get("eps").getAsFloat(), o.get("grad_clip").getAsFloat(),
        o.get("shuffle").getAsBoolean(), o.get("seed").getAsLong());
  }

  static JsonObject loaderState(DataLoader.State s) {
    JsonObject o = new JsonObject();
    o.addProperty("position", s.position());
    o.addProperty("epoch", s.epoch());
    o.addProperty("cursor", s.cursor());
    o.addProperty("seed", s.seed());
    o.addProperty("shuffle", s.shuffle());
    o.addProperty("batch", s.batch());
    o.addProperty("seq", s.seq());
    o.addProperty("data_tokens", s.dataTokens());
    return o;
  }

  static DataLoader.State loaderState(JsonObject o) {
    return new DataLoader.State(o.get("position").getAsLong(), o.get("epoch").getAsLong(), o.get("cursor").getAsLong(),
        o.get("seed").getAsLong(), o.get("shuffle").getAsBoolean(), o.get("batch").getAsInt(), o.get("seq").getAsInt(),
        o.get("data_tokens").getAsLong());
  }
}
