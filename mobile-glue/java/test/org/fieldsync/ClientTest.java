package org.fieldsync;

import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * The Java package against a real fieldsync-server (run by fieldsync_with_server, which sets FS_TEST_*): alice's
 * phone opens a replica, writes offline, syncs; the server has the data (fieldsync-admin export --user); bob's
 * device changes alice's account and the change arrives through alice's listener on the sync thread; errors
 * are FieldSyncExceptions with the C ABI's codes; a closed client refuses every call. A plain main with
 * checks (no JUnit): exit status 0 when every check held.
 */
public final class ClientTest {
  private static int failures = 0;

  private static void check(boolean condition, String what) {
    if (!condition) {
      System.err.println("check failed: " + what);
      failures++;
    }
  }

  private interface Body {
    void run();
  }

  private static void expectError(Body body, int domain, int code, String what) {
    try {
      body.run();
      check(false, what + ": no exception");
    } catch (FieldSyncException e) {
      check(e.is(domain, code), what + ": got " + e);
    }
  }

  private static String env(String name) {
    String v = System.getenv(name);
    if (v == null || v.isEmpty()) {
      System.err.println(name + " is not set: run this test through fieldsync_with_server");
      System.exit(1);
    }
    return v;
  }

  private static Config device(String user, long node) {
    return new Config()
        .path(env("FS_TEST_SCRATCH") + "/java-" + user + ".db")
        .user(user)
        .serverUrl(env("FS_TEST_URL"))
        .caFile(env("FS_TEST_CA"))
        .priceList("retail")
        .appVersion("java-test 1.0")
        .node(node)
        .reconnectCapMs(500);
  }

  private static String serverExport(String user) throws Exception {
    Process p = new ProcessBuilder(env("FS_TEST_ADMIN"), "--data-dir", env("FS_TEST_DATA_DIR"), "export", "--user",
        user).redirectErrorStream(true).start();
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    try (InputStream in = p.getInputStream()) {
      in.transferTo(out);
    }
    check(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0, "fieldsync-admin export ran");
    return out.toString(StandardCharsets.UTF_8);
  }

  /** Records what alice's listener heard, and on which threads. */
  static final class Recorder implements SyncListener {
    final List<String> changes = Collections.synchronizedList(new ArrayList<>());
    final List<String> threads = Collections.synchronizedList(new ArrayList<>());
    volatile String watchedId;
    final CountDownLatch watchedArrived = new CountDownLatch(1);
    volatile boolean synced;
    volatile long bootstrapTotal;

    @Override
    public void onRecordsChanged(String recordsJson) {
      changes.add(recordsJson);
      String id = watchedId;
      if (id != null && recordsJson.contains(id)) {
        threads.add(Thread.currentThread().getName());
        watchedArrived.countDown();
      }
    }

    @Override
    public void onProgress(ProgressKind kind, long done, long total) {
      if (kind == ProgressKind.BOOTSTRAP) bootstrapTotal = total;
    }

    @Override
    public void onSynced() {
      synced = true;
    }

    @Override
    public void onError(FieldSyncException error) {
      System.err.println("(listener error: " + error + ")");
    }
  }

  public static void main(String[] args) throws Exception {
    check((FieldSync.abiVersion() >> 16) == 1, "ABI major version 1");
    String product = env("FS_TEST_PRODUCT");

    // A wrong password: the server's auth_failed.
    expectError(() -> FieldSync.login(device("alice", 0x2001), "wrong-password"), FieldSyncException.DOMAIN_FIELDSYNC,
        FieldSyncException.CODE_AUTH_FAILED, "login with a wrong password");
    expectError(() -> Client.open(new Config().user("alice")), FieldSyncException.DOMAIN_API,
        FieldSyncException.API_INVALID_ARGUMENT, "open without a path");

    Config aliceConfig = device("alice", 0x2001);
    FieldSync.Login login = FieldSync.login(aliceConfig, "alice-password");
    check(login.token.length() > 10 && login.expiresAtMs > System.currentTimeMillis(), "alice has a token");
    aliceConfig.token(login.token);

    Recorder heard = new Recorder();
    Client alice = Client.open(aliceConfig);
    try {
      alice.setListener(heard);
      check(alice.node() == 0x2001, "alice's node");
      alice.syncNow(30_000);  // the catalogue
      check(heard.synced && heard.bootstrapTotal >= 2, "bootstrap heard");

      // Offline: an account (with a non-BMP character: UTF-16 to UTF-8 and back), a visit, an order.
      String account = alice.createAccount(
          "{\"name\": \"Caf\u00e9 \uD83E\uDD50 Nord\", \"territory_id\": \"north\"}");
      String visit = alice.checkIn("{\"account_id\": \"" + account + "\"}");
      alice.addVisitNote(visit, "Wants oat milk");
      alice.checkOut(visit, "follow_up", null);
      String order = alice.draftOrder(account, null,
          "[{\"product_id\": \"" + product + "\", \"quantity\": 2}]");
      check(alice.syncStatus().pendingCount == 5, "five transactions pending offline");
      check(alice.get(RecordKind.ORDER, order).contains("\"total_cents\":500"), "order priced from the list");
      check(alice.get(RecordKind.ACCOUNT, account).contains("Caf\u00e9 \uD83E\uDD50 Nord"), "name round-trips");

      // Errors carry the C ABI's domain and code.
      expectError(() -> alice.get(RecordKind.VISIT, "not-an-id"), FieldSyncException.DOMAIN_FIELDSYNC,
          FieldSyncException.CODE_INVALID_ARGUMENT, "a malformed id");
      expectError(() -> alice.checkOut(visit, "splendid", null), FieldSyncException.DOMAIN_FIELDSYNC,
          FieldSyncException.CODE_VALUE_INVALID, "an unknown outcome");
      expectError(() -> alice.createAccount("{\"name\": \"X\", \"territory\": \"north\"}"),
          FieldSyncException.DOMAIN_API, FieldSyncException.API_INVALID_ARGUMENT, "an unknown key");
      expectError(() -> alice.addVisitNote(null, "x"), FieldSyncException.DOMAIN_API,
          FieldSyncException.API_NULL_ARGUMENT, "a null id");

      // ABI 1.2: a lead converted offline, a case taken on the account, a task.
      String lead = alice.createLead(
          "{\"person_name\": \"Dana\", \"source\": \"referral\", \"territory_id\": \"north\"}");
      alice.qualifyLead(lead);
      String converted = alice.convertLead(lead, "{\"amount_cents\": 1000}");
      check(converted.contains("\"opportunity_id\"") && alice.get(RecordKind.LEAD, lead).contains("\"converted\""),
          "the lead converted in one call");
      expectError(() -> alice.disqualifyLead(lead, "late"), FieldSyncException.DOMAIN_FIELDSYNC,
          FieldSyncException.CODE_INVALID_TRANSITION, "a converted lead is final");
      String serviceCase = alice.openCase("{\"account_id\": \"" + account + "\", \"subject\": \"Leak\"}");
      alice.takeCase(serviceCase);
      check(alice.get(RecordKind.ACCOUNT, account).contains(serviceCase), "the account shows its open case");
      check(alice.list(Listing.MY_CASES, null).contains(serviceCase), "the case is mine");
      String task = alice.createTask("{\"title\": \"Call Dana\", \"lead_id\": \"" + lead + "\"}");
      alice.completeTask(task);
      check(alice.get(RecordKind.TASK, task).contains("\"status\":\"done\""), "task done");

      alice.syncNow(30_000);
      SyncStatus status = alice.syncStatus();
      check(status.pendingCount == 0 && status.lastSyncedAtMs != null, "everything pushed");
      String exported = serverExport("alice");
      check(exported.contains(account) && exported.contains(visit) && exported.contains(order)
              && exported.contains("Wants oat milk") && exported.contains("Caf\u00e9 \uD83E\uDD50 Nord")
          && exported.contains(lead) && exported.contains(serviceCase),
          "the server has alice's offline writes");
      check(exported.equals(alice.exportJson()), "replica and server agree byte for byte");

      // Live: alice stays connected; bob's change to her account arrives through her listener.
      heard.watchedId = account;
      alice.syncStart();
      check(alice.syncStatus().running, "sync running");
      Config bobConfig = device("bob", 0x2002);
      bobConfig.token(FieldSync.login(bobConfig, "bob-password").token);
      try (Client bob = Client.open(bobConfig)) {
        bob.syncNow(30_000);
        check(bob.list(Listing.ACCOUNTS_IN_TERRITORY, "north").contains(account), "bob sees the account");
        bob.editAccount(account, "{\"add_note\": \"bob: deliveries before 9\"}");
        bob.syncNow(30_000);
      }
      check(heard.watchedArrived.await(30, TimeUnit.SECONDS), "bob's change arrived through the listener");
      check(heard.threads.size() == 1 && heard.threads.get(0).equals("fieldsync-sync"),
          "listener called on the sync thread: " + heard.threads);
      check(alice.get(RecordKind.ACCOUNT, account).contains("deliveries before 9"), "bob's note is in the replica");
      alice.syncStop();
    } finally {
      alice.close();
    }
    alice.close();  // idempotent
    expectError(() -> alice.exportJson(), FieldSyncException.DOMAIN_API, FieldSyncException.API_CLOSED,
        "use after close");

    if (failures > 0) {
      System.err.println(failures + " check(s) failed");
      System.exit(1);
    }
    System.out.println("ClientTest: all checks passed");
  }
}
