package org.fieldsync;

/** Library-wide functions, and the native library's loading. */
public final class FieldSync {
  static {
    System.loadLibrary("fieldsync_jni");
  }

  private FieldSync() {}

  /** The ABI version of the loaded native library: major * 65536 + minor. */
  public static int abiVersion() {
    return nativeAbiVersion();
  }

  /** A device token and when it expires. */
  public static final class Login {
    public final String token;
    public final long expiresAtMs;

    Login(String token, long expiresAtMs) {
      this.token = token;
      this.expiresAtMs = expiresAtMs;
    }
  }

  /**
   * POST /login on the configured server (serverUrl, caFile or pinSha256, user, node): exchanges the user's
   * password for a device token. Blocking: call it off the main thread.
   *
   * @throws FieldSyncException CODE_AUTH_FAILED, CODE_RATE_LIMITED (retryable), DOMAIN_TRANSPORT errors.
   */
  public static Login login(Config config, String password) {
    long[] expires = new long[1];
    String token = nativeLogin(config.textKeys(), config.textValues(), config.intKeys(), config.intValues(),
        password, expires);
    return new Login(token, expires[0]);
  }

  /** After head office registered the device again: removes the revocation marker of a replica path. */
  public static void clearRevocation(String path) {
    nativeClearRevocation(path);
  }

  static void load() {}

  private static native int nativeAbiVersion();

  private static native String nativeLogin(int[] textKeys, String[] textValues, int[] intKeys, long[] intValues,
      String password, long[] expiresOut);

  private static native void nativeClearRevocation(String path);
}
