package dev.athanor.cli;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonPrimitive;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import dev.athanor.io.FileProblems;
import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.Footprint.Component;
import dev.athanor.offload.OffloadPlan;
import dev.athanor.offload.OffloadPlanner;
import dev.athanor.params.Role;
import java.io.IOException;
import java.io.PrintStream;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import picocli.CommandLine.Model.CommandSpec;

/**
 * Offload plans on the command line: the table {@code train --offload auto} and {@code plan} print, and the JSON file
 * {@code plan --json} writes and {@code train --offload PLAN.json} reads back (checked strictly against the model).
 *
 * <p>The file: {@code {"format": "athanor-offload-plan", "version": 1, "chunk_bytes": N, "recompute": false,
 * "activations": "memory", "placements": [{"unit": "embedding", "role": "adam_m", "tier": "DISK", "bytes": N}, ...],
 * "totals": {...}, "disk_traffic_per_step": N, "activation_traffic_per_step": N}}. {@code "activations"} is where the
 * blocks' saved activations are between a micro-batch's forward and backward: {@code "memory"} (kept), {@code
 * "recompute"} (recomputed in the backward) or {@code "disk"} (on DISK); files without it (written before it existed)
 * read as {@code "recompute"} when {@code "recompute"} is true, else {@code "memory"}. Reading uses the placements, the
 * chunk and the activations; the totals and the traffic are recomputed for the run (the file's are for people).
 */
final class PlanFile {
  private PlanFile() {}

  static final String FORMAT = "athanor-offload-plan";
  static final int VERSION = 1;
  private static final Set<String> KEYS = Set.of("format", "version", "chunk_bytes", "recompute", "activations", "placements",
      "totals", "disk_traffic_per_step", "activation_traffic_per_step");
  /** The values of {@code "activations"}. */
  static final List<String> ACTIVATIONS = List.of("memory", "recompute", "disk");
  private static final Set<String> ENTRY_KEYS = Set.of("unit", "role", "tier", "bytes");

  /** The plan as a table: unit, role, tier, bytes; totals per tier; DISK traffic per step. */
  static void print(OffloadPlan p, PrintStream out) {
    out.println(!p.diskRoles().isEmpty() ? "offload plan: " + OffloadPlan.describe(p.diskRoles()) + " on DISK, streamed by the "
        + "optimizer in chunks of " + Footprint.size(p.chunkBytes()) + " per role"
        : p.activationsOnDisk() ? "offload plan: the weights, gradients and AdamW's moments in memory"
        : "offload plan: everything in memory (it fits)");
    printUnits(p, p.placements(), "bytes", out);
    printTotals(p, out);
    if (p.recompute()) out.println("  activations: one block's kept, the others recomputed in the backward pass (as --recompute)");
    if (p.activationsOnDisk()) {
      dev.athanor.nn.Stage whole = dev.athanor.nn.Stage.whole(p.model());
      int n = Footprint.offloadedBlocks(whole);
      long block = Footprint.blockActivationBytes(p.model(), p.device(), p.footprint().computeDtype(), p.activations().batch(),
          p.activations().seq());
      out.println("  activations: on DISK (tier DISK), " + n + " of " + whole.blocks() + " blocks' (" + Footprint.size(block)
          + " each), written behind the forward and read back ahead of the backward, the next block's while one computes; a "
          + "ring of " + (whole.blocks() - n) + " blocks' in HOST memory: " + Footprint.size(p.activationTrafficPerStep())
          + " of DISK traffic per step");
    }
    out.println("  DISK traffic per step: " + Footprint.size(p.diskTrafficPerStep())
        + (p.offloads() ? " (optimizer staging " + Footprint.size(p.stagingBytes()) + " of HOST memory"
            + (p.diskRoles().contains(Role.MASTER) || p.diskRoles().contains(Role.GRAD)
                ? "; weights and gradients paged through host windows of a few units, the next unit read ahead" : "")
            + ")" : ""));
  }

  /**
   * A ZeRO rank's plan ({@link dev.athanor.offload.OffloadPlanner#placeShard}): which of AdamW's moments of its 1/dp
   * shard go to DISK, and its bytes per tier by component.
   */
  static void printShard(OffloadPlan p, int zero, int dp, PrintStream out) {
    boolean stateOnDisk = p.diskRoles().contains(Role.MASTER) || p.diskRoles().contains(Role.GRAD);
    out.println(p.offloads() ? "offload plan (ZeRO " + zero + ", per rank): its 1/" + dp + " shard of "
        + OffloadPlan.describe(p.diskRoles()) + " on DISK, in files of that rank's own (rank-N in the offload directory), "
        + "streamed by the optimizer in chunks of " + Footprint.size(p.chunkBytes()) + " per role; "
        + (stateOnDisk ? "each unit's part of it read for its gathers and written behind its gradient folds, a chunk at a time"
            + (p.diskRoles().contains(Role.MASTER) ? "" : "; the weights' shard stays in memory")
            : zero == 3 ? "the weights' and gradients' shards stay in memory" : "the weights and gradients stay in memory")
        : "offload plan (ZeRO " + zero + ", per rank): everything in memory (it fits)");
    if (zero == 3 && p.offloads()) {  // the shard's roles, each on its tier
      List<String> where = new ArrayList<>();
      for (Role r : OffloadPlan.ROLES) where.add(name(r) + " " + (p.diskRoles().contains(r) ? "DISK" : "HOST"));
      out.println("  shard roles: " + String.join(", ", where));
    }
    if (p.offloads()) {  // per unit: every rank keeps the same units resident; the bytes are rank 0's part of each
      out.println("  per unit, rank 0's part of its shard (every rank places the same units the same way; its parts' "
          + "bytes differ):");
      printUnits(p, p.placements(dp, 0), "rank 0", out);
    }
    printTotals(p, out);
    if (p.offloads()) {
      out.println("  DISK traffic per step (busiest rank): " + Footprint.size(OffloadPlanner.shardTrafficPerStep(p.model(), dp,
          p.accum(), p.diskRoles(), p.residentUnits())) + "; " + perRank(p, dp));
    }
  }

  /** Each rank's DISK bytes per step ("rank 0: X, rank 1: Y"), or rank 0's alone beyond 8 ranks. */
  private static String perRank(OffloadPlan p, int dp) {
    List<String> out = new ArrayList<>();
    for (int r = 0; r < Math.min(dp, 8); r++) {
      out.add("rank " + r + ": " + Footprint.size(OffloadPlanner.shardTrafficPerStep(p.model(), dp, r, p.accum(), p.diskRoles(),
          p.residentUnits())));
    }
    return String.join(", ", dp > 8 ? out.subList(0, 1) : out);
  }

  /** DISK bytes per step of rank 0 of a ZeRO run over {@code dp} ranks with the shard plan {@code p}. */
  static long shardTraffic(OffloadPlan p, int dp) {
    return OffloadPlanner.shardTrafficPerStep(p.model(), dp, 0, p.accum(), p.diskRoles(), p.residentUnits());
  }

  /**
   * The resident units of each role on DISK (a line per role that has some), then the table of {@code rows} (unit, role,
   * tier, bytes under the heading {@code bytes}).
   */
  private static void printUnits(OffloadPlan p, List<OffloadPlan.Placement> rows, String bytes, PrintStream out) {
    int unitCount = OffloadPlan.units(p.model()).size();
    for (Role r : OffloadPlan.ROLES) {
      Set<String> kept = p.resident(r);
      if (kept.isEmpty()) continue;
      out.println("  " + name(r) + " of " + kept.size() + " of " + unitCount + " units stays in memory (HOST below): "
          + (r == Role.MASTER ? "never paged, updated in place" : r == Role.GRAD ? "formed and accumulated in memory"
              : "updated in place") + ", no DISK traffic");
    }
    int w = "unit".length();
    for (OffloadPlan.Placement x : rows) w = Math.max(w, x.unit().length());
    String f = "  %-" + w + "s  %-6s  %-4s  %10s%n";
    out.printf(Locale.ROOT, f, "unit", "role", "tier", bytes);
    for (OffloadPlan.Placement x : rows) out.printf(Locale.ROOT, f, x.unit(), name(x.role()), x.tier(), Footprint.size(x.bytes()));
  }

  /** A plan's bytes per tier, by component. */
  private static void printTotals(OffloadPlan p, PrintStream out) {
    for (Tier t : Tier.values()) {
      long b = p.bytes(t);
      if (b == 0) continue;
      List<String> parts = new ArrayList<>();
      for (Component c : Component.values()) {
        long cb = p.footprint().bytes(c, Set.of(t));
        if (cb > 0) parts.add(c.label() + " " + Footprint.size(cb));
      }
      out.printf(Locale.ROOT, "  total %-4s %s (%s)%n", t, Footprint.size(b), String.join(", ", parts));
    }
  }

  static String name(Role r) {
    return r.name().toLowerCase(Locale.ROOT);
  }

  /** The plan as JSON text. */
  static String json(OffloadPlan p) {
    return json(p, p.diskTrafficPerStep());
  }

  /**
   * The plan as JSON text with {@code diskTraffic} as its DISK traffic per step (a ZeRO rank's plan: rank 0's, {@link
   * #shardTraffic}; its placements give each unit's tier and the whole unit's bytes, as train --offload reads them).
   */
  static String json(OffloadPlan p, long diskTraffic) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("format", FORMAT);
    m.put("version", VERSION);
    m.put("chunk_bytes", p.chunkBytes());
    m.put("recompute", p.recompute());
    m.put("activations", p.activationsOnDisk() ? "disk" : p.recompute() ? "recompute" : "memory");
    List<Object> rows = new ArrayList<>();
    for (OffloadPlan.Placement x : p.placements()) {
      Map<String, Object> r = new LinkedHashMap<>();
      r.put("unit", x.unit());
      r.put("role", name(x.role()));
      r.put("tier", x.tier().name());
      r.put("bytes", x.bytes());
      rows.add(r);
    }
    m.put("placements", rows);
    Map<String, Object> totals = new LinkedHashMap<>();
    for (Tier t : Tier.values()) if (p.bytes(t) > 0) totals.put(t.name(), p.bytes(t));
    m.put("totals", totals);
    m.put("disk_traffic_per_step", diskTraffic);
    m.put("activation_traffic_per_step", p.activationTrafficPerStep());
    return new com.google.gson.GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create().toJson(m) + "\n";
  }

  /**
   * What a plan file asks for: the roles on DISK (those with a unit on DISK), per such role the units kept in memory,
   * the chunk, whether activations are recomputed (absent: false) or on DISK (absent: false).
   */
  record Request(Set<Role> diskRoles, long chunkBytes, boolean recompute, Map<Role, Set<String>> residentUnits,
      boolean activationsOnDisk) {}

  /**
   * Reads {@code file} and checks it against {@code units} (the model's units in layout order): each role an entry names
   * is placed once for every unit, in memory (HOST, or DEVICE on CUDA) or on DISK, with the model's bytes; the tiers may
   * differ from unit to unit (a role with a unit on DISK keeps its units in memory resident). Files of the first
   * format, with a tier per role for every unit but the weights', read the same. Any problem is a usage error naming the
   * file and the entry.
   */
  static Request read(CommandSpec spec, String flag, Path file, List<OffloadPlan.UnitSize> units, Footprint inMemory) {
    Tier memory = inMemory.device().isCuda() ? Tier.DEVICE : Tier.HOST;  // where this job keeps what is not on DISK
    String where = flag + " " + file;
    String text;
    try {
      text = Files.readString(file, StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw Options.usage(spec, where + ": cannot read the plan: " + FileProblems.describe(e));
    }
    JsonElement root;
    try {
      JsonReader reader = new JsonReader(new StringReader(text));
      reader.setStrictness(Strictness.STRICT);
      root = com.google.gson.JsonParser.parseReader(reader);
    } catch (JsonParseException e) {
      throw Options.usage(spec, where + " is not valid JSON: " + Messages.of(e));
    }
    if (!root.isJsonObject()) throw Options.usage(spec, where + ": expected a JSON object (an offload plan), got " + root);
    JsonObject o = root.getAsJsonObject();
    for (String k : o.keySet()) {
      if (!KEYS.contains(k)) throw Options.usage(spec, where + ": unknown key \"" + k + "\" (expected " + sorted(KEYS) + ")");
    }
    String format = string(spec, where, o, "format");
    if (!format.equals(FORMAT)) throw Options.usage(spec, where + ": format is \"" + format + "\", expected \"" + FORMAT + "\"");
    long version = number(spec, where, o, "version");
    if (version != VERSION) throw Options.usage(spec, where + ": version " + version + " is not supported (expected " + VERSION + ")");
    long chunk = number(spec, where, o, "chunk_bytes");
    if (chunk < 4 || chunk % 4 != 0) {
      throw Options.usage(spec, where + ": chunk_bytes " + chunk + " must be a positive multiple of 4 (whole F32 elements)");
    }
    boolean recompute = false;
    if (o.has("recompute")) {
      JsonElement r = o.get("recompute");
      if (!(r instanceof JsonPrimitive p) || !p.isBoolean()) throw Options.usage(spec, where + ": \"recompute\" must be true or false, got " + r);
      recompute = r.getAsBoolean();
    }
    boolean activationsOnDisk = false;
    if (o.has("activations")) {
      JsonElement a = o.get("activations");
      if (!(a instanceof JsonPrimitive p) || !p.isString() || !ACTIVATIONS.contains(p.getAsString())) {
        throw Options.usage(spec, where + ": \"activations\" must be one of \"" + String.join("\", \"", ACTIVATIONS) + "\", got " + a);
      }
      String v = a.getAsString();
      if (o.has("recompute") && recompute != v.equals("recompute")) {
        throw Options.usage(spec, where + ": \"activations\" is \"" + v + "\" but \"recompute\" is " + recompute
            + ": they must agree (recompute is true exactly when activations is \"recompute\")");
      }
      recompute = v.equals("recompute");
      activationsOnDisk = v.equals("disk");
      if (activationsOnDisk && inMemory.device().isCuda()) {
        throw Options.usage(spec, where + ": \"activations\": \"disk\" needs --device cpu (offload on " + inMemory.device()
            + " is not supported yet)");
      }
    }
    JsonElement pe = o.get("placements");
    if (pe == null || !pe.isJsonArray()) throw Options.usage(spec, where + ": \"placements\" must be an array of entries");
    JsonArray placements = pe.getAsJsonArray();
    Map<String, Long> unitElements = new LinkedHashMap<>();
    for (OffloadPlan.UnitSize u : units) unitElements.put(u.name(), u.elements());
    Set<Role> named = EnumSet.noneOf(Role.class);  // the roles some entry places
    Set<Role> disk = EnumSet.noneOf(Role.class);   // the roles some unit has on DISK
    Map<Role, Set<String>> kept = new java.util.EnumMap<>(Role.class);  // per role, the units it has in memory
    Set<String> seen = new java.util.HashSet<>();
    for (int i = 0; i < placements.size(); i++) {
      String entry = where + ": placement " + (i + 1);
      if (!placements.get(i).isJsonObject()) throw Options.usage(spec, entry + " must be an object, got " + placements.get(i));
      JsonObject e = placements.get(i).getAsJsonObject();
      for (String k : e.keySet()) {
        if (!ENTRY_KEYS.contains(k)) throw Options.usage(spec, entry + ": unknown key \"" + k + "\" (expected " + sorted(ENTRY_KEYS) + ")");
      }
      String unit = string(spec, entry, e, "unit"), roleName = string(spec, entry, e, "role"),
          tierName = string(spec, entry, e, "tier");
      entry += " (" + unit + " " + roleName + ")";
      if (!unitElements.containsKey(unit)) {
        throw Options.usage(spec, entry + ": unknown unit \"" + unit + "\": this model's units are embedding, block.0 to block."
            + (units.size() - 3) + " and head");
      }
      Role role = role(spec, entry, roleName);
      Tier tier;
      try {
        tier = Tier.valueOf(tierName.toUpperCase(Locale.ROOT));
      } catch (IllegalArgumentException x) {
        throw Options.usage(spec, entry + ": unknown tier \"" + tierName + "\" (expected " + memory + " or DISK)");
      }
      if (tier != memory && tier != Tier.DISK) {
        throw Options.usage(spec, entry + ": tier " + tier + " is not supported here (expected " + memory + " or DISK on "
            + inMemory.device() + ")");
      }
      if (e.has("bytes")) {
        long bytes = number(spec, entry, e, "bytes");
        long want = unitElements.get(unit) * role.dtype(inMemory.computeDtype()).byteSize();
        if (bytes != want) {
          throw Options.usage(spec, entry + ": bytes " + bytes + ", but this model's " + unit + " " + roleName + " is " + want
              + " bytes: the plan was made for another model");
        }
      }
      if (!seen.add(unit + " " + role)) throw Options.usage(spec, entry + ": " + unit + " " + roleName + " is placed twice");
      named.add(role);  // each role is placed unit by unit: on DISK, or resident in memory
      if (tier == Tier.DISK) disk.add(role);
      else kept.computeIfAbsent(role, k -> new java.util.LinkedHashSet<>()).add(unit);
    }
    for (OffloadPlan.UnitSize u : units) {
      for (Role r : OffloadPlan.ROLES) {
        // a role no entry names stays in memory (plans written before weights and gradients could be placed)
        if (named.contains(r) && !seen.contains(u.name() + " " + r)) {
          throw Options.usage(spec, where + ": no placement for " + u.name() + " " + name(r) + " (a role placed for one unit "
              + "needs a placement for every unit)");
        }
      }
    }
    Map<Role, Set<String>> resident = new java.util.EnumMap<>(Role.class);  // a role on DISK: its units in memory
    for (Role r : disk) if (kept.containsKey(r)) resident.put(r, Set.copyOf(kept.get(r)));
    return new Request(disk, chunk, recompute, resident, activationsOnDisk);
  }

  private static Role role(CommandSpec spec, String entry, String name) {
    Role r;
    try {
      r = Role.valueOf(name.toUpperCase(Locale.ROOT));
    } catch (IllegalArgumentException x) {
      throw Options.usage(spec, entry + ": unknown role \"" + name + "\" (expected master, grad, adam_m or adam_v)");
    }
    if (!OffloadPlan.ROLES.contains(r)) {
      throw Options.usage(spec, entry + ": role " + name + " cannot be placed by a plan: master, grad, adam_m and adam_v can ("
          + "weight follows master, grad_acc follows grad; the activations are placed by \"activations\")");
    }
    return r;
  }

  private static String sorted(Set<String> s) {
    return String.join(", ", new java.util.TreeSet<>(s));
  }

  private static String string(CommandSpec spec, String where, JsonObject o, String key) {
    JsonElement e = o.get(key);
    if (e == null) throw Options.usage(spec, where + ": missing \"" + key + "\"");
    if (!(e instanceof JsonPrimitive p) || !p.isString()) throw Options.usage(spec, where + ": \"" + key + "\" must be a string, got " + e);
    return p.getAsString();
  }

  private static long number(CommandSpec spec, String where, JsonObject o, String key) {
    JsonElement e = o.get(key);
    if (e == null) throw Options.usage(spec, where + ": missing \"" + key + "\"");
    if (e instanceof JsonPrimitive p && p.isNumber()) {
      try {
        return p.getAsBigDecimal().longValueExact();
      } catch (ArithmeticException x) {
        // below
      }
    }
    throw Options.usage(spec, where + ": \"" + key + "\" must be a whole number, got " + e);
  }
}
