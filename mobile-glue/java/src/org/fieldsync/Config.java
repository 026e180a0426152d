package org.fieldsync;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * What to open: the replica file, the user, the server and its trust, the device's node id. A plain Java
 * object (no native resource); {@link Client#open} and {@link FieldSync#login} read it. Not thread-safe.
 */
public final class Config {
  // The C ABI's fs_option values (fieldsync.h).
  static final int PATH = 1, USER = 2, TOKEN = 3, SERVER_URL = 4, CA_FILE = 5, PIN_SHA256 = 6, PRICE_LIST = 7,
      ROLE = 8, APP_VERSION = 9;
  static final int NODE = 20, UTC_OFFSET_MINUTES = 21, RECONNECT_CAP_MS = 22, CONNECT_TIMEOUT_MS = 23,
      IDLE_TIMEOUT_MS = 24, SYNCHRONOUS_FULL = 25;

  private final Map<Integer, String> texts = new LinkedHashMap<>();
  private final Map<Integer, Long> integers = new LinkedHashMap<>();

  public Config path(String v) { return text(PATH, v); }
  public Config user(String v) { return text(USER, v); }
  public Config token(String v) { return text(TOKEN, v); }
  /** wss://host[:port]/sync */
  public Config serverUrl(String v) { return text(SERVER_URL, v); }
  /** A PEM bundle to trust instead of the system store. */
  public Config caFile(String v) { return text(CA_FILE, v); }
  /** Hex SHA-256 of the server certificate (DER). */
  public Config pinSha256(String v) { return text(PIN_SHA256, v); }
  public Config priceList(String v) { return text(PRICE_LIST, v); }
  /** "rep", "manager" or "head_office" (local checks only; the server decides). */
  public Config role(String v) { return text(ROLE, v); }
  /** The app's build ("2.4.1 (317)"), shown in head office's sync health; at most 64 printable ASCII bytes. */
  public Config appVersion(String v) { return text(APP_VERSION, v); }
  /** This device's registered node id (a uint64, as its bits). */
  public Config node(long v) { return integer(NODE, v); }
  public Config utcOffsetMinutes(int v) { return integer(UTC_OFFSET_MINUTES, v); }
  public Config reconnectCapMs(long v) { return integer(RECONNECT_CAP_MS, v); }
  public Config connectTimeoutMs(long v) { return integer(CONNECT_TIMEOUT_MS, v); }
  public Config idleTimeoutMs(long v) { return integer(IDLE_TIMEOUT_MS, v); }
  public Config synchronousFull(boolean v) { return integer(SYNCHRONOUS_FULL, v ? 1 : 0); }

  private Config text(int option, String v) {
    texts.put(option, v);
    return this;
  }

  private Config integer(int option, long v) {
    integers.put(option, v);
    return this;
  }

  int[] textKeys() {
    return texts.keySet().stream().mapToInt(Integer::intValue).toArray();
  }

  String[] textValues() {
    return texts.values().toArray(new String[0]);
  }

  int[] intKeys() {
    return integers.keySet().stream().mapToInt(Integer::intValue).toArray();
  }

  long[] intValues() {
    return integers.values().stream().mapToLong(Long::longValue).toArray();
  }
}
