package org.fieldsync;

/** A snapshot of a client's sync state (fs_sync_status). */
public final class SyncStatus {
  public enum State { DISCONNECTED, HANDSHAKING, BOOTSTRAPPING, SYNCING, STOPPED }

  public final State state;
  public final boolean connected;
  public final boolean running;
  public final long pendingCount;
  /** When the replica was last fully synced, or null if never. */
  public final Long lastSyncedAtMs;
  public final long bootstrapDone;
  public final long bootstrapTotal;

  SyncStatus(int state, boolean connected, boolean running, long pendingCount, boolean hasLastSynced,
      long lastSyncedAtMs, long bootstrapDone, long bootstrapTotal) {
    this.state = State.values()[Math.max(0, Math.min(state, State.values().length - 1))];
    this.connected = connected;
    this.running = running;
    this.pendingCount = pendingCount;
    this.lastSyncedAtMs = hasLastSynced ? lastSyncedAtMs : null;
    this.bootstrapDone = bootstrapDone;
    this.bootstrapTotal = bootstrapTotal;
  }
}
