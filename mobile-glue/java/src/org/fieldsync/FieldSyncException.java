package org.fieldsync;

/**
 * An error from the library: the C ABI's fs_error (domain, code, message, retryable). Unchecked, so that it
 * passes through lambdas and Kotlin code; every method of {@link Client} documents when it throws.
 */
public class FieldSyncException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** The sync engine, the replica and the server: codes are fieldsync::ErrorCode (FS_CODE_* in fieldsync.h). */
  public static final int DOMAIN_FIELDSYNC = 1;
  /** The network transport: FS_TRANSPORT_* codes. */
  public static final int DOMAIN_TRANSPORT = 2;
  /** The API itself: FS_API_* codes below. */
  public static final int DOMAIN_API = 3;

  public static final int CODE_RATE_LIMITED = 8;
  public static final int CODE_AUTH_FAILED = 20;
  public static final int CODE_TOKEN_EXPIRED = 21;
  public static final int CODE_DEVICE_REVOKED = 22;
  public static final int CODE_VALUE_INVALID = 44;
  public static final int CODE_INVALID_TRANSITION = 47;
  public static final int CODE_PERMISSION_DENIED = 54;
  public static final int CODE_MISSING_FIELD = 55;
  public static final int CODE_RECORD_NOT_FOUND = 50;
  public static final int CODE_INVALID_ARGUMENT = 90;

  public static final int API_NULL_ARGUMENT = 1;
  public static final int API_INVALID_ARGUMENT = 2;
  public static final int API_UNKNOWN_ENUM = 3;
  public static final int API_CLOSED = 4;
  public static final int API_IN_CALLBACK = 5;
  public static final int API_BAD_STATE = 6;
  public static final int API_OUT_OF_MEMORY = 7;
  public static final int API_INTERNAL = 8;

  private final int domain;
  private final int code;
  private final boolean retryable;

  public FieldSyncException(int domain, int code, String message, boolean retryable) {
    super(message);
    this.domain = domain;
    this.code = code;
    this.retryable = retryable;
  }

  public int domain() {
    return domain;
  }

  public int code() {
    return code;
  }

  /** True when the same call may succeed later (storage locked, rate limited, network). */
  public boolean isRetryable() {
    return retryable;
  }

  public boolean is(int domain, int code) {
    return this.domain == domain && this.code == code;
  }

  @Override
  public String toString() {
    return "FieldSyncException(domain " + domain + ", code " + code + "): " + getMessage();
  }
}
