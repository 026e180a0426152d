package org.fieldsync;

/**
 * What a client tells the app. Every method has an empty default: implement the ones you need.
 *
 * <p>Threads: onRecordsChanged runs on the thread that made an app write (inside that call, after the commit)
 * and on the sync thread for changes sync brought; every other method runs on the sync thread, a native
 * thread attached to the JVM as a daemon named "fieldsync-sync" (or the thread calling {@link Client#syncNow}).
 * Android apps post to their main Looper from here. Inside a listener, reads and writes on the client work;
 * syncStart, syncStop, syncNow and close throw FieldSyncException API_IN_CALLBACK. An exception thrown by a
 * listener is caught and dropped (the sync thread must go on); return quickly.
 */
public interface SyncListener {
  /** Records changed: a JSON array of {"entity", "id"}. */
  default void onRecordsChanged(String recordsJson) {}

  /** Bootstrap (records received) or push (transactions acknowledged) progress. */
  default void onProgress(ProgressKind kind, long done, long total) {}

  /** A conflict that concerns this user, as JSON (see docs/EMBEDDING.md). */
  default void onConflict(String conflictJson) {}

  /** One of this device's transactions was rolled back by the server, as JSON. */
  default void onRejection(String rejectionJson) {}

  /** Outbox empty and caught up with the server. */
  default void onSynced() {}

  /** A session or storage error reported by the sync engine. */
  default void onError(FieldSyncException error) {}

  /** The device was revoked and its replica erased; every later call throws CODE_DEVICE_REVOKED. */
  default void onErased(FieldSyncException result) {}
}
