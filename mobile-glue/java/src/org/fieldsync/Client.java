package org.fieldsync;

import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * An open replica with its sync transport: the Java face of the C ABI's fs_client (fieldsync.h, which
 * documents every operation and the JSON forms). Thread-safe. Close it (try-with-resources) to stop sync and
 * release the replica; after {@link #close} every method throws FieldSyncException(DOMAIN_API, API_CLOSED).
 *
 * <p>Writes take JSON objects whose keys are listed in fieldsync.h (an unknown key is an API_INVALID_ARGUMENT
 * error) and return the new record's id; reads return JSON text. Every method throws FieldSyncException with
 * the C ABI's domain and code.
 */
public final class Client implements AutoCloseable {
  static {
    FieldSync.load();
  }

  // Calls hold the read lock; close() takes the write lock to free the native handle, so no call can be
  // using it then. Reentrant: a listener may call back in on the thread that made a write.
  private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
  private long handle;  // fs_client*, 0 once freed
  private long bridge;  // the JNI bridge's listener slot for this client

  private Client(long[] handles) {
    this.handle = handles[0];
    this.bridge = handles[1];
  }

  /**
   * Opens (or creates) the replica at config's path.
   *
   * @throws FieldSyncException storage errors, CODE_DEVICE_REVOKED, API_INVALID_ARGUMENT (no path or user).
   */
  public static Client open(Config config) {
    return new Client(nativeOpen(config.textKeys(), config.textValues(), config.intKeys(), config.intValues()));
  }

  /** Stops sync and closes the replica. Idempotent. Not from a listener (API_IN_CALLBACK). */
  @Override
  public void close() {
    long h;
    lock.readLock().lock();
    try {
      h = handle;
      if (h == 0) return;
      nativeClose(h);  // stops the sync thread: its listeners may still call in, under the read lock
    } finally {
      lock.readLock().unlock();
    }
    lock.writeLock().lock();
    try {
      if (handle != 0) {
        nativeFree(handle, bridge);
        handle = 0;
        bridge = 0;
      }
    } finally {
      lock.writeLock().unlock();
    }
  }

  private interface Call<T> {
    T run(long handle);
  }

  private <T> T call(Call<T> body) {
    lock.readLock().lock();
    try {
      if (handle == 0) {
        throw new FieldSyncException(FieldSyncException.DOMAIN_API, FieldSyncException.API_CLOSED,
            "the client is closed", false);
      }
      return body.run(handle);
    } finally {
      lock.readLock().unlock();
    }
  }

  /** Replaces the listener (null removes it). See {@link SyncListener} for threads. */
  public void setListener(SyncListener listener) {
    call(h -> {
      nativeSetListener(h, bridge, listener);
      return null;
    });
  }

  public long node() {
    return call(Client::nativeNode);
  }

  // ---- writes

  public String createAccount(String accountJson) {
    return call(h -> nativeWrite(h, W_CREATE_ACCOUNT, accountJson, null, null));
  }

  public void editAccount(String accountId, String editJson) {
    call(h -> nativeWrite(h, W_EDIT_ACCOUNT, accountId, editJson, null));
  }

  public String createContact(String contactJson) {
    return call(h -> nativeWrite(h, W_CREATE_CONTACT, contactJson, null, null));
  }

  public void editContact(String contactId, String editJson) {
    call(h -> nativeWrite(h, W_EDIT_CONTACT, contactId, editJson, null));
  }

  public String checkIn(String checkInJson) {
    return call(h -> nativeWrite(h, W_CHECK_IN, checkInJson, null, null));
  }

  public void addVisitNote(String visitId, String text) {
    call(h -> nativeWrite(h, W_ADD_VISIT_NOTE, visitId, text, null));
  }

  /** @param atMs null: now */
  public void checkOut(String visitId, String outcome, Long atMs) {
    call(h -> {
      nativeCheckOut(h, visitId, outcome, atMs != null, atMs != null ? atMs : 0);
      return null;
    });
  }

  /** @param currency null: EUR; @param linesJson null or a JSON array of lines */
  public String draftOrder(String accountId, String currency, String linesJson) {
    return call(h -> nativeWrite(h, W_DRAFT_ORDER, accountId, currency, linesJson));
  }

  public String addLine(String orderId, String lineJson) {
    return call(h -> nativeWrite(h, W_ADD_LINE, orderId, lineJson, null));
  }

  public void changeLine(String lineId, String editJson) {
    call(h -> nativeWrite(h, W_CHANGE_LINE, lineId, editJson, null));
  }

  public void removeLine(String lineId) {
    call(h -> nativeWrite(h, W_REMOVE_LINE, lineId, null, null));
  }

  public void submitOrder(String orderId) {
    call(h -> nativeWrite(h, W_SUBMIT_ORDER, orderId, null, null));
  }

  /** @return {"id", "overlaps": [...]} */
  public String createEvent(String eventJson) {
    return call(h -> nativeWrite(h, W_CREATE_EVENT, eventJson, null, null));
  }

  /** @return {"id", "overlaps": [...]} */
  public String moveEvent(String eventId, long startAtMs, long endAtMs) {
    return call(h -> nativeMoveEvent(h, eventId, startAtMs, endAtMs));
  }

  public void cancelEvent(String eventId) {
    call(h -> nativeWrite(h, W_CANCEL_EVENT, eventId, null, null));
  }

  public String createOpportunity(String opportunityJson) {
    return call(h -> nativeWrite(h, W_CREATE_OPPORTUNITY, opportunityJson, null, null));
  }

  public void moveOpportunity(String opportunityId, String stage) {
    call(h -> nativeWrite(h, W_MOVE_OPPORTUNITY, opportunityId, stage, null));
  }

  // ---- leads, service cases, assets and tasks (ABI 1.2; fieldsync.h documents the JSON forms)

  public String createLead(String leadJson) {
    return call(h -> nativeWrite(h, W_CREATE_LEAD, leadJson, null, null));
  }

  public void markLeadContacted(String leadId) {
    call(h -> nativeWrite(h, W_LEAD_CONTACTED, leadId, null, null));
  }

  public void qualifyLead(String leadId) {
    call(h -> nativeWrite(h, W_LEAD_QUALIFY, leadId, null, null));
  }

  public void disqualifyLead(String leadId, String reason) {
    call(h -> nativeWrite(h, W_LEAD_DISQUALIFY, leadId, reason, null));
  }

  public void addLeadNote(String leadId, String text) {
    call(h -> nativeWrite(h, W_LEAD_NOTE, leadId, text, null));
  }

  /** @param conversionJson null: defaults; @return {"lead_id", "account_id", "contact_id", "opportunity_id"} */
  public String convertLead(String leadId, String conversionJson) {
    return call(h -> nativeWrite(h, W_CONVERT_LEAD, leadId, conversionJson, null));
  }

  public String openCase(String caseJson) {
    return call(h -> nativeWrite(h, W_OPEN_CASE, caseJson, null, null));
  }

  public void takeCase(String caseId) {
    call(h -> nativeWrite(h, W_TAKE_CASE, caseId, null, null));
  }

  public void startCase(String caseId) {
    call(h -> nativeWrite(h, W_START_CASE, caseId, null, null));
  }

  public void resolveCase(String caseId, String resolutionNote) {
    call(h -> nativeWrite(h, W_RESOLVE_CASE, caseId, resolutionNote, null));
  }

  public void closeCase(String caseId) {
    call(h -> nativeWrite(h, W_CLOSE_CASE, caseId, null, null));
  }

  public void reopenCase(String caseId) {
    call(h -> nativeWrite(h, W_REOPEN_CASE, caseId, null, null));
  }

  public void dispatchCase(String caseId, String assignee) {
    call(h -> nativeWrite(h, W_DISPATCH_CASE, caseId, assignee, null));
  }

  public void addCaseNote(String caseId, String text) {
    call(h -> nativeWrite(h, W_CASE_NOTE, caseId, text, null));
  }

  public String registerAsset(String assetJson) {
    return call(h -> nativeWrite(h, W_REGISTER_ASSET, assetJson, null, null));
  }

  public String createTask(String taskJson) {
    return call(h -> nativeWrite(h, W_CREATE_TASK, taskJson, null, null));
  }

  public void completeTask(String taskId) {
    call(h -> nativeWrite(h, W_COMPLETE_TASK, taskId, null, null));
  }

  public void cancelTask(String taskId) {
    call(h -> nativeWrite(h, W_CANCEL_TASK, taskId, null, null));
  }

  public void reopenTask(String taskId) {
    call(h -> nativeWrite(h, W_REOPEN_TASK, taskId, null, null));
  }

  // ---- reads

  public String get(RecordKind kind, String id) {
    return call(h -> nativeGet(h, kind.value, id));
  }

  /** @param arg the listing's argument (fieldsync.h), or null */
  public String list(Listing listing, String arg) {
    return call(h -> nativeList(h, listing.value, arg));
  }

  public String agenda(long fromMs, long toMs) {
    return call(h -> nativeAgenda(h, fromMs, toMs));
  }

  public String exportJson() {
    return call(Client::nativeExport);
  }

  /** @return {unread conflicts, unread rejections} */
  public int[] unreadCounts() {
    return call(Client::nativeUnreadCounts);
  }

  public void markConflictsSeen(long upToInboxId) {
    call(h -> {
      nativeMarkSeen(h, true, upToInboxId);
      return null;
    });
  }

  public void markRejectionsSeen(long upToInboxId) {
    call(h -> {
      nativeMarkSeen(h, false, upToInboxId);
      return null;
    });
  }

  // ---- sync

  /** Starts the sync thread: connect, sync, stay connected, reconnect with backoff. */
  public void syncStart() {
    call(h -> {
      nativeSync(h, SYNC_START, 0);
      return null;
    });
  }

  public void syncStop() {
    call(h -> {
      nativeSync(h, SYNC_STOP, 0);
      return null;
    });
  }

  /** Pushes and pulls until idle or timeoutMs. Blocking: call it off the main thread. */
  public void syncNow(long timeoutMs) {
    call(h -> {
      nativeSync(h, SYNC_NOW, timeoutMs);
      return null;
    });
  }

  public SyncStatus syncStatus() {
    return call(Client::nativeSyncStatus);
  }

  // The bridge's write operations (one native entry point keeps the bridge short).
  static final int W_CREATE_ACCOUNT = 1, W_EDIT_ACCOUNT = 2, W_CREATE_CONTACT = 3, W_EDIT_CONTACT = 4,
      W_CHECK_IN = 5, W_ADD_VISIT_NOTE = 6, W_DRAFT_ORDER = 7, W_ADD_LINE = 8, W_CHANGE_LINE = 9,
      W_REMOVE_LINE = 10, W_SUBMIT_ORDER = 11, W_CREATE_EVENT = 12, W_CANCEL_EVENT = 13,
      W_CREATE_OPPORTUNITY = 14, W_MOVE_OPPORTUNITY = 15, W_CREATE_LEAD = 16, W_LEAD_CONTACTED = 17,
      W_LEAD_QUALIFY = 18, W_LEAD_DISQUALIFY = 19, W_LEAD_NOTE = 20, W_CONVERT_LEAD = 21, W_OPEN_CASE = 22,
      W_TAKE_CASE = 23, W_START_CASE = 24, W_RESOLVE_CASE = 25, W_CLOSE_CASE = 26, W_REOPEN_CASE = 27,
      W_DISPATCH_CASE = 28, W_CASE_NOTE = 29, W_REGISTER_ASSET = 30, W_CREATE_TASK = 31, W_COMPLETE_TASK = 32,
      W_CANCEL_TASK = 33, W_REOPEN_TASK = 34;
  static final int SYNC_START = 1, SYNC_STOP = 2, SYNC_NOW = 3;

  private static native long[] nativeOpen(int[] textKeys, String[] textValues, int[] intKeys, long[] intValues);
  private static native void nativeClose(long handle);
  private static native void nativeFree(long handle, long bridge);
  private static native void nativeSetListener(long handle, long bridge, SyncListener listener);
  private static native long nativeNode(long handle);
  private static native String nativeWrite(long handle, int op, String a, String b, String c);
  private static native void nativeCheckOut(long handle, String visitId, String outcome, boolean hasAt, long atMs);
  private static native String nativeMoveEvent(long handle, String eventId, long startAtMs, long endAtMs);
  private static native String nativeGet(long handle, int kind, String id);
  private static native String nativeList(long handle, int listing, String arg);
  private static native String nativeAgenda(long handle, long fromMs, long toMs);
  private static native String nativeExport(long handle);
  private static native int[] nativeUnreadCounts(long handle);
  private static native void nativeMarkSeen(long handle, boolean conflicts, long upToInboxId);
  private static native void nativeSync(long handle, int op, long timeoutMs);
  private static native SyncStatus nativeSyncStatus(long handle);
}
