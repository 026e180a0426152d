// A thin Swift wrapper over the C ABI (fieldsync.h): classes owning the handles, `throws` for fs_error, closures
// for the callbacks. Mechanical on purpose: fieldsync.h documents every operation, JSON form and threading
// rule. NOT COMPILED in this repository (no Swift toolchain on its Linux CI); docs/EMBEDDING.md says so.
import CFieldSync
import Foundation

/// An fs_error: the domain (FS_DOMAIN_*), the code within it, a message for logs.
public struct FieldSyncError: Error, CustomStringConvertible {
    public let domain: Int32
    public let code: Int32
    public let retryable: Bool
    public let message: String

    init(_ e: fs_error) {
        var copy = e
        domain = e.domain
        code = e.code
        retryable = e.retryable != 0
        message = withUnsafeBytes(of: &copy.message) { raw in
            String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
        }
    }

    public var description: String { "FieldSyncError(\(domain)/\(code)): \(message)" }
}

/// Runs a C call taking an fs_error*, throwing it when the call returns false.
@discardableResult
func call(_ body: (UnsafeMutablePointer<fs_error>) -> Bool) throws -> Bool {
    var e = fs_error()
    if !body(&e) { throw FieldSyncError(e) }
    return true
}

/// Takes a library-allocated string (released here).
func take(_ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>, UnsafeMutablePointer<fs_error>) -> Bool) throws
    -> String
{
    var out: UnsafeMutablePointer<CChar>? = nil
    var e = fs_error()
    let ok = body(&out, &e)
    defer { fs_string_free(out) }
    if !ok { throw FieldSyncError(e) }
    return out.map { String(cString: $0) } ?? ""
}

public enum FieldSync {
    public static var abiVersion: UInt32 { fs_abi_version() }

    /// POST /login: the user's password for a device token. Blocking: call it off the main thread.
    public static func login(_ config: Config, password: String) throws -> (token: String, expiresAtMs: Int64) {
        var expires: Int64 = 0
        let token = try take { out, e in fs_login(config.handle, password, out, &expires, e) }
        return (token, expires)
    }
}

/// What to open (fs_config).
public final class Config {
    let handle: OpaquePointer

    public init() throws {
        var e = fs_error()
        guard let h = fs_config_new(&e) else { throw FieldSyncError(e) }
        handle = h
    }

    deinit { fs_config_free(handle) }

    @discardableResult
    public func set(_ option: Int32, _ value: String?) throws -> Config {
        try call { fs_config_set_text(handle, option, value, $0) }
        return self
    }

    @discardableResult
    public func set(_ option: Int32, _ value: Int64) throws -> Config {
        try call { fs_config_set_int(handle, option, value, $0) }
        return self
    }
}

public enum RecordKind: Int32 {
    case account = 1, visit = 2, order = 3, event = 4, opportunity = 5
    case lead = 6, serviceCase = 7, asset = 8, task = 9  // ABI 1.2
}

public enum Listing: Int32 {
    case accountsByPrefix = 1, accountsInTerritory, visitsOfAccount, todaysVisits, openOrders, agendaToday,
        agendaWeek, pipeline, conflicts, rejections, conflictInbox, rejectionInbox
    case myLeads = 13, myCases, openCasesOfAccount, assetsOfAccount, openTasks, overdueTasks  // ABI 1.2
}

/// Callbacks run on the sync thread (records changed also on the thread that wrote): hop to the main queue
/// for UI work. Inside one, reads and writes work; syncStart/syncStop/syncNow/close throw FS_API_IN_CALLBACK.
final class Callbacks {
    var recordsChanged: ((String) -> Void)?
    var progress: ((Int32, UInt64, UInt64) -> Void)?
    var conflict: ((String) -> Void)?
    var rejection: ((String) -> Void)?
    var synced: (() -> Void)?
    var error: ((FieldSyncError) -> Void)?
    var erased: ((FieldSyncError) -> Void)?
    let lock = NSLock()

    func get<T>(_ path: KeyPath<Callbacks, T?>) -> T? {
        lock.lock()
        defer { lock.unlock() }
        return self[keyPath: path]
    }
}

private func box(_ p: UnsafeMutableRawPointer?) -> Callbacks {
    Unmanaged<Callbacks>.fromOpaque(p!).takeUnretainedValue()
}

/// An open replica with its sync transport (fs_client). Thread-safe; `close()` or deinit releases it.
public final class Client {
    private let handle: OpaquePointer
    private let callbacks = Callbacks()

    public init(_ config: Config) throws {
        var e = fs_error()
        guard let h = fs_client_open(config.handle, &e) else { throw FieldSyncError(e) }
        handle = h
        // The trampolines are registered once; they read the closures from `callbacks`, which lives as long
        // as this object (deinit frees the handle first, and fs_client_free joins the sync thread).
        let ud = Unmanaged.passUnretained(callbacks).toOpaque()
        fs_on_records_changed(handle, { ud, json in box(ud).get(\.recordsChanged)?(String(cString: json)) }, ud, nil)
        fs_on_progress(handle, { ud, kind, done, total in box(ud).get(\.progress)?(kind, done, total) }, ud, nil)
        fs_on_conflict(handle, { ud, json in box(ud).get(\.conflict)?(String(cString: json)) }, ud, nil)
        fs_on_rejection(handle, { ud, json in box(ud).get(\.rejection)?(String(cString: json)) }, ud, nil)
        fs_on_synced(handle, { ud in box(ud).get(\.synced)?() }, ud, nil)
        fs_on_error(handle, { ud, err in box(ud).get(\.error)?(FieldSyncError(err.pointee)) }, ud, nil)
        fs_on_erased(handle, { ud, err in box(ud).get(\.erased)?(FieldSyncError(err.pointee)) }, ud, nil)
    }

    deinit { fs_client_free(handle) }

    /// Stops sync and closes the replica; later calls throw FS_API_CLOSED.
    public func close() throws { try call { fs_client_close(handle, $0) } }

    private func setCallback(_ body: (Callbacks) -> Void) {
        callbacks.lock.lock()
        body(callbacks)
        callbacks.lock.unlock()
    }

    public func onRecordsChanged(_ fn: ((String) -> Void)?) { setCallback { $0.recordsChanged = fn } }
    public func onProgress(_ fn: ((Int32, UInt64, UInt64) -> Void)?) { setCallback { $0.progress = fn } }
    public func onConflict(_ fn: ((String) -> Void)?) { setCallback { $0.conflict = fn } }
    public func onRejection(_ fn: ((String) -> Void)?) { setCallback { $0.rejection = fn } }
    public func onSynced(_ fn: (() -> Void)?) { setCallback { $0.synced = fn } }
    public func onError(_ fn: ((FieldSyncError) -> Void)?) { setCallback { $0.error = fn } }
    public func onErased(_ fn: ((FieldSyncError) -> Void)?) { setCallback { $0.erased = fn } }

    // ---- writes (JSON keys: fieldsync.h)

    public func createAccount(_ json: String) throws -> String {
        try take { out, e in fs_create_account(handle, json, out, e) }
    }
    public func editAccount(_ id: String, _ json: String) throws { try call { fs_edit_account(handle, id, json, $0) } }
    public func createContact(_ json: String) throws -> String {
        try take { out, e in fs_create_contact(handle, json, out, e) }
    }
    public func editContact(_ id: String, _ json: String) throws { try call { fs_edit_contact(handle, id, json, $0) } }
    public func checkIn(_ json: String) throws -> String { try take { out, e in fs_check_in(handle, json, out, e) } }
    public func addVisitNote(_ visitId: String, _ text: String) throws {
        try call { fs_add_visit_note(handle, visitId, text, $0) }
    }
    public func checkOut(_ visitId: String, outcome: String, atMs: Int64? = nil) throws {
        if var at = atMs {
            try call { fs_check_out(handle, visitId, outcome, &at, $0) }
        } else {
            try call { fs_check_out(handle, visitId, outcome, nil, $0) }
        }
    }
    public func draftOrder(_ accountId: String, currency: String? = nil, linesJson: String? = nil) throws -> String {
        try take { out, e in fs_draft_order(handle, accountId, currency, linesJson, out, e) }
    }
    public func addLine(_ orderId: String, _ json: String) throws -> String {
        try take { out, e in fs_add_line(handle, orderId, json, out, e) }
    }
    public func changeLine(_ lineId: String, _ json: String) throws { try call { fs_change_line(handle, lineId, json, $0) } }
    public func removeLine(_ lineId: String) throws { try call { fs_remove_line(handle, lineId, $0) } }
    public func submitOrder(_ orderId: String) throws { try call { fs_submit_order(handle, orderId, $0) } }
    public func createEvent(_ json: String) throws -> String {
        try take { out, e in fs_create_event(handle, json, out, e) }
    }
    public func moveEvent(_ id: String, startAtMs: Int64, endAtMs: Int64) throws -> String {
        try take { out, e in fs_move_event(handle, id, startAtMs, endAtMs, out, e) }
    }
    public func cancelEvent(_ id: String) throws { try call { fs_cancel_event(handle, id, $0) } }
    public func createOpportunity(_ json: String) throws -> String {
        try take { out, e in fs_create_opportunity(handle, json, out, e) }
    }
    public func moveOpportunity(_ id: String, stage: String) throws {
        try call { fs_move_opportunity(handle, id, stage, $0) }
    }

    // ---- leads, service cases, assets and tasks (ABI 1.2)

    public func createLead(_ json: String) throws -> String { try take { out, e in fs_create_lead(handle, json, out, e) } }
    public func markLeadContacted(_ id: String) throws {
        try call { fs_lead_action(handle, id, Int32(FS_LEAD_CONTACTED), nil, $0) }
    }
    public func qualifyLead(_ id: String) throws { try call { fs_lead_action(handle, id, Int32(FS_LEAD_QUALIFY), nil, $0) } }
    public func disqualifyLead(_ id: String, reason: String) throws {
        try call { fs_lead_action(handle, id, Int32(FS_LEAD_DISQUALIFY), reason, $0) }
    }
    public func addLeadNote(_ id: String, _ text: String) throws {
        try call { fs_lead_action(handle, id, Int32(FS_LEAD_NOTE), text, $0) }
    }
    /// Returns {"lead_id", "account_id", "contact_id", "opportunity_id"}.
    public func convertLead(_ id: String, _ json: String? = nil) throws -> String {
        try take { out, e in fs_convert_lead(handle, id, json, out, e) }
    }
    public func openCase(_ json: String) throws -> String { try take { out, e in fs_open_case(handle, json, out, e) } }
    public func takeCase(_ id: String) throws { try call { fs_case_action(handle, id, Int32(FS_CASE_TAKE), nil, $0) } }
    public func startCase(_ id: String) throws { try call { fs_case_action(handle, id, Int32(FS_CASE_START), nil, $0) } }
    public func resolveCase(_ id: String, note: String) throws {
        try call { fs_case_action(handle, id, Int32(FS_CASE_RESOLVE), note, $0) }
    }
    public func closeCase(_ id: String) throws { try call { fs_case_action(handle, id, Int32(FS_CASE_CLOSE), nil, $0) } }
    public func reopenCase(_ id: String) throws { try call { fs_case_action(handle, id, Int32(FS_CASE_REOPEN), nil, $0) } }
    public func dispatchCase(_ id: String, to assignee: String) throws {
        try call { fs_case_action(handle, id, Int32(FS_CASE_DISPATCH), assignee, $0) }
    }
    public func addCaseNote(_ id: String, _ text: String) throws {
        try call { fs_case_action(handle, id, Int32(FS_CASE_NOTE), text, $0) }
    }
    public func registerAsset(_ json: String) throws -> String {
        try take { out, e in fs_register_asset(handle, json, out, e) }
    }
    public func createTask(_ json: String) throws -> String { try take { out, e in fs_create_task(handle, json, out, e) } }
    public func completeTask(_ id: String) throws { try call { fs_task_action(handle, id, Int32(FS_TASK_COMPLETE), $0) } }
    public func cancelTask(_ id: String) throws { try call { fs_task_action(handle, id, Int32(FS_TASK_CANCEL), $0) } }
    public func reopenTask(_ id: String) throws { try call { fs_task_action(handle, id, Int32(FS_TASK_REOPEN), $0) } }

    // ---- reads (JSON text)

    public func get(_ kind: RecordKind, _ id: String) throws -> String {
        try take { out, e in fs_get(handle, kind.rawValue, id, out, e) }
    }
    public func list(_ listing: Listing, _ arg: String? = nil) throws -> String {
        try take { out, e in fs_list(handle, listing.rawValue, arg, out, e) }
    }
    public func agenda(fromMs: Int64, toMs: Int64) throws -> String {
        try take { out, e in fs_agenda(handle, fromMs, toMs, out, e) }
    }
    public func exportJson() throws -> String { try take { out, e in fs_export_json(handle, out, e) } }

    // ---- sync

    public func syncStart() throws { try call { fs_sync_start(handle, $0) } }
    public func syncStop() throws { try call { fs_sync_stop(handle, $0) } }
    /// Blocking: call it off the main thread.
    public func syncNow(timeoutMs: Int64) throws { try call { fs_sync_now(handle, timeoutMs, $0) } }
    public func syncStatus() throws -> fs_sync_status {
        var s = fs_sync_status()
        try call { fs_sync_status_get(handle, &s, $0) }
        return s
    }
}
