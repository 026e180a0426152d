// The JNI bridge: org.fieldsync's native methods over the C ABI (fieldsync.h), nothing else. It sees only the
// public header, like any app would, and is its own shared library (libfieldsync_jni) so that
// libfieldsync_mobile keeps exporting fs_* only.
//
// Strings cross as UTF-16 (GetStringChars / NewString) converted to and from UTF-8 here: JNI's "modified
// UTF-8" differs from UTF-8 for NUL and for characters outside the BMP (an emoji in a visit note).
// Errors become org.fieldsync.FieldSyncException with the fs_error's domain, code and message. Listener calls
// come from the sync thread, which is attached to the JVM as a daemon on its first callback and detached when
// it ends.
#include <jni.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>

#include "fieldsync/fieldsync.h"

namespace {

JavaVM* g_vm = nullptr;
jclass g_exception_class = nullptr;  // global refs, made in JNI_OnLoad
jmethodID g_exception_ctor = nullptr;
jclass g_status_class = nullptr;
jmethodID g_status_ctor = nullptr;
jclass g_progress_class = nullptr;
jmethodID g_progress_of = nullptr;
jmethodID g_on_records_changed = nullptr, g_on_progress = nullptr, g_on_conflict = nullptr,
          g_on_rejection = nullptr, g_on_synced = nullptr, g_on_error = nullptr, g_on_erased = nullptr;

// ---- Strings

std::string to_utf8(JNIEnv* env, jstring s) {
  std::string out;
  if (s == nullptr) return out;
  const jsize n = env->GetStringLength(s);
  const jchar* u = env->GetStringChars(s, nullptr);
  if (u == nullptr) return out;
  out.reserve(static_cast<size_t>(n));
  for (jsize i = 0; i < n; ++i) {
    uint32_t c = u[i];
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && u[i + 1] >= 0xDC00 && u[i + 1] <= 0xDFFF) {
      c = 0x10000 + ((c - 0xD800) << 10) + (u[i + 1] - 0xDC00);
      ++i;
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      c = 0xFFFD;  // a lone surrogate is not text
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xE0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  env->ReleaseStringChars(s, u);
  return out;
}

// The library only returns valid UTF-8 (SQLite text it wrote from UTF-8, JSON it serialized); anything
// malformed still becomes U+FFFD rather than a crash.
jstring to_jstring(JNIEnv* env, const char* s) {
  if (s == nullptr) return nullptr;
  std::u16string u;
  const auto* p = reinterpret_cast<const unsigned char*>(s);
  while (*p) {
    uint32_t c = *p;
    int extra = 0;
    if (c < 0x80) {
      extra = 0;
    } else if ((c & 0xE0) == 0xC0) {
      c &= 0x1F;
      extra = 1;
    } else if ((c & 0xF0) == 0xE0) {
      c &= 0x0F;
      extra = 2;
    } else if ((c & 0xF8) == 0xF0) {
      c &= 0x07;
      extra = 3;
    } else {
      c = 0xFFFD;
    }
    ++p;
    for (int i = 0; i < extra; ++i, ++p) {
      if ((*p & 0xC0) != 0x80) {
        c = 0xFFFD;
        break;
      }
      c = (c << 6) | (*p & 0x3F);
    }
    if (c >= 0x10000 && c <= 0x10FFFF) {
      c -= 0x10000;
      u += static_cast<char16_t>(0xD800 + (c >> 10));
      u += static_cast<char16_t>(0xDC00 + (c & 0x3FF));
    } else {
      u += static_cast<char16_t>(c > 0x10FFFF ? 0xFFFD : c);
    }
  }
  return env->NewString(reinterpret_cast<const jchar*>(u.data()), static_cast<jsize>(u.size()));
}

// A Java string argument as UTF-8, or NULL when the Java string was null (the C ABI reports which argument).
class Utf8Arg {
 public:
  Utf8Arg(JNIEnv* env, jstring s) : null_(s == nullptr), text_(to_utf8(env, s)) {}
  const char* get() const { return null_ ? nullptr : text_.c_str(); }

 private:
  bool null_;
  std::string text_;
};

// ---- Errors

jobject new_exception(JNIEnv* env, const fs_error& e) {
  jstring message = to_jstring(env, e.message);
  return env->NewObject(g_exception_class, g_exception_ctor, static_cast<jint>(e.domain),
                        static_cast<jint>(e.code), message, static_cast<jboolean>(e.retryable != 0));
}

void throw_error(JNIEnv* env, const fs_error& e) {
  if (env->ExceptionCheck()) return;  // already pending (out of memory building the message)
  jobject ex = new_exception(env, e);
  if (ex != nullptr) env->Throw(static_cast<jthrowable>(ex));
}

// Returns `s` (a library-allocated string, freed here) as a Java string; on failure throws and returns null.
jstring take_string(JNIEnv* env, bool ok, char* s, const fs_error& e) {
  if (!ok) {
    fs_string_free(s);
    throw_error(env, e);
    return nullptr;
  }
  jstring out = to_jstring(env, s);
  fs_string_free(s);
  return out;
}

fs_client* client_of(jlong handle) {
  return reinterpret_cast<fs_client*>(static_cast<intptr_t>(handle));
}

// ---- The listener

// One per client: the Java listener (a global ref) the callbacks forward to.
struct Bridge {
  std::mutex mu;
  jobject listener = nullptr;
};

// Detaches a native thread the bridge attached, when that thread ends.
struct Attachment {
  bool attached = false;
  ~Attachment() {
    if (attached && g_vm) g_vm->DetachCurrentThread();
  }
};
thread_local Attachment t_attachment;

JNIEnv* callback_env() {
  JNIEnv* env = nullptr;
  if (g_vm->GetEnv(reinterpret_cast<void**>(&env), JNI_VERSION_1_6) == JNI_OK) return env;
  JavaVMAttachArgs args{JNI_VERSION_1_6, const_cast<char*>("fieldsync-sync"), nullptr};
  if (g_vm->AttachCurrentThreadAsDaemon(reinterpret_cast<void**>(&env), &args) != JNI_OK) return nullptr;
  t_attachment.attached = true;
  return env;
}

// Calls `invoke(env, listener)` with a local ref to the current listener, if any; a Java exception thrown by
// the listener is dropped (the sync thread must go on, and the header says so).
template <typename F>
void with_listener(void* user_data, F&& invoke) {
  auto* bridge = static_cast<Bridge*>(user_data);
  JNIEnv* env = callback_env();
  if (env == nullptr) return;
  env->PushLocalFrame(16);
  jobject listener = nullptr;
  {
    std::lock_guard lock(bridge->mu);
    if (bridge->listener) listener = env->NewLocalRef(bridge->listener);
  }
  if (listener) {
    invoke(env, listener);
    if (env->ExceptionCheck()) env->ExceptionClear();
  }
  env->PopLocalFrame(nullptr);
}

void on_records_changed(void* user_data, const char* json) {
  with_listener(user_data, [&](JNIEnv* env, jobject l) {
    env->CallVoidMethod(l, g_on_records_changed, to_jstring(env, json));
  });
}
void on_progress(void* user_data, fs_progress_kind kind, uint64_t done, uint64_t total) {
  with_listener(user_data, [&](JNIEnv* env, jobject l) {
    jobject k = env->CallStaticObjectMethod(g_progress_class, g_progress_of, static_cast<jint>(kind));
    if (env->ExceptionCheck()) return;
    env->CallVoidMethod(l, g_on_progress, k, static_cast<jlong>(done), static_cast<jlong>(total));
  });
}
void on_conflict(void* user_data, const char* json) {
  with_listener(user_data, [&](JNIEnv* env, jobject l) {
    env->CallVoidMethod(l, g_on_conflict, to_jstring(env, json));
  });
}
void on_rejection(void* user_data, const char* json) {
  with_listener(user_data, [&](JNIEnv* env, jobject l) {
    env->CallVoidMethod(l, g_on_rejection, to_jstring(env, json));
  });
}
void on_synced(void* user_data) {
  with_listener(user_data, [&](JNIEnv* env, jobject l) { env->CallVoidMethod(l, g_on_synced); });
}
void on_error(void* user_data, const fs_error* e) {
  with_listener(user_data,
                [&](JNIEnv* env, jobject l) { env->CallVoidMethod(l, g_on_error, new_exception(env, *e)); });
}
void on_erased(void* user_data, const fs_error* e) {
  with_listener(user_data,
                [&](JNIEnv* env, jobject l) { env->CallVoidMethod(l, g_on_erased, new_exception(env, *e)); });
}

// A config built from Config's option arrays; null (with an exception thrown) on failure.
fs_config* make_config(JNIEnv* env, jintArray text_keys, jobjectArray text_values, jintArray int_keys,
                       jlongArray int_values) {
  fs_error e{};
  fs_config* config = fs_config_new(&e);
  if (config == nullptr) {
    throw_error(env, e);
    return nullptr;
  }
  const jsize nt = env->GetArrayLength(text_keys), ni = env->GetArrayLength(int_keys);
  jint* tk = env->GetIntArrayElements(text_keys, nullptr);
  jint* ik = env->GetIntArrayElements(int_keys, nullptr);
  jlong* iv = env->GetLongArrayElements(int_values, nullptr);
  bool ok = tk && ik && iv;
  for (jsize i = 0; ok && i < nt; ++i) {
    auto value = static_cast<jstring>(env->GetObjectArrayElement(text_values, i));
    Utf8Arg v(env, value);
    ok = fs_config_set_text(config, tk[i], v.get(), &e);
    env->DeleteLocalRef(value);
  }
  for (jsize i = 0; ok && i < ni; ++i) ok = fs_config_set_int(config, ik[i], iv[i], &e);
  if (tk) env->ReleaseIntArrayElements(text_keys, tk, JNI_ABORT);
  if (ik) env->ReleaseIntArrayElements(int_keys, ik, JNI_ABORT);
  if (iv) env->ReleaseLongArrayElements(int_values, iv, JNI_ABORT);
  if (!ok) {
    fs_config_free(config);
    throw_error(env, e);
    return nullptr;
  }
  return config;
}

bool cache(JNIEnv* env, jclass& slot, const char* name) {
  jclass local = env->FindClass(name);
  if (local == nullptr) return false;
  slot = static_cast<jclass>(env->NewGlobalRef(local));
  env->DeleteLocalRef(local);
  return slot != nullptr;
}

}  // namespace

extern "C" {

JNIEXPORT jint JNI_OnLoad(JavaVM* vm, void*) {
  g_vm = vm;
  JNIEnv* env = nullptr;
  if (vm->GetEnv(reinterpret_cast<void**>(&env), JNI_VERSION_1_6) != JNI_OK) return JNI_ERR;
  jclass listener = nullptr;
  if (!cache(env, g_exception_class, "org/fieldsync/FieldSyncException") ||
      !cache(env, g_status_class, "org/fieldsync/SyncStatus") ||
      !cache(env, g_progress_class, "org/fieldsync/ProgressKind") ||
      !cache(env, listener, "org/fieldsync/SyncListener"))
    return JNI_ERR;
  g_exception_ctor = env->GetMethodID(g_exception_class, "<init>", "(IILjava/lang/String;Z)V");
  g_status_ctor = env->GetMethodID(g_status_class, "<init>", "(IZZJZJJJ)V");
  g_progress_of = env->GetStaticMethodID(g_progress_class, "of", "(I)Lorg/fieldsync/ProgressKind;");
  g_on_records_changed = env->GetMethodID(listener, "onRecordsChanged", "(Ljava/lang/String;)V");
  g_on_progress = env->GetMethodID(listener, "onProgress", "(Lorg/fieldsync/ProgressKind;JJ)V");
  g_on_conflict = env->GetMethodID(listener, "onConflict", "(Ljava/lang/String;)V");
  g_on_rejection = env->GetMethodID(listener, "onRejection", "(Ljava/lang/String;)V");
  g_on_synced = env->GetMethodID(listener, "onSynced", "()V");
  g_on_error = env->GetMethodID(listener, "onError", "(Lorg/fieldsync/FieldSyncException;)V");
  g_on_erased = env->GetMethodID(listener, "onErased", "(Lorg/fieldsync/FieldSyncException;)V");
  env->DeleteGlobalRef(listener);
  if (!g_exception_ctor || !g_status_ctor || !g_progress_of || !g_on_records_changed || !g_on_progress ||
      !g_on_conflict || !g_on_rejection || !g_on_synced || !g_on_error || !g_on_erased)
    return JNI_ERR;
  return JNI_VERSION_1_6;
}

// ---- org.fieldsync.FieldSync

JNIEXPORT jint JNICALL Java_org_fieldsync_FieldSync_nativeAbiVersion(JNIEnv*, jclass) {
  return static_cast<jint>(fs_abi_version());
}

JNIEXPORT jstring JNICALL Java_org_fieldsync_FieldSync_nativeLogin(JNIEnv* env, jclass, jintArray tk,
                                                                   jobjectArray tv, jintArray ik,
                                                                   jlongArray iv, jstring password,
                                                                   jlongArray expires_out) {
  fs_config* config = make_config(env, tk, tv, ik, iv);
  if (config == nullptr) return nullptr;
  fs_error e{};
  char* token = nullptr;
  int64_t expires = 0;
  const bool ok = fs_login(config, Utf8Arg(env, password).get(), &token, &expires, &e);
  fs_config_free(config);
  if (ok) {
    const jlong v = expires;
    env->SetLongArrayRegion(expires_out, 0, 1, &v);
  }
  return take_string(env, ok, token, e);
}

JNIEXPORT void JNICALL Java_org_fieldsync_FieldSync_nativeClearRevocation(JNIEnv* env, jclass, jstring path) {
  fs_error e{};
  if (!fs_clear_revocation(Utf8Arg(env, path).get(), &e)) throw_error(env, e);
}

// ---- org.fieldsync.Client

JNIEXPORT jlongArray JNICALL Java_org_fieldsync_Client_nativeOpen(JNIEnv* env, jclass, jintArray tk,
                                                                  jobjectArray tv, jintArray ik,
                                                                  jlongArray iv) {
  fs_config* config = make_config(env, tk, tv, ik, iv);
  if (config == nullptr) return nullptr;
  fs_error e{};
  fs_client* client = fs_client_open(config, &e);
  fs_config_free(config);
  if (client == nullptr) {
    throw_error(env, e);
    return nullptr;
  }
  auto* bridge = new Bridge();
  // Registered once: the trampolines forward to whatever listener the bridge holds.
  const bool ok =
      fs_on_records_changed(client, on_records_changed, bridge, &e) &&
      fs_on_progress(client, on_progress, bridge, &e) && fs_on_conflict(client, on_conflict, bridge, &e) &&
      fs_on_rejection(client, on_rejection, bridge, &e) && fs_on_synced(client, on_synced, bridge, &e) &&
      fs_on_error(client, on_error, bridge, &e) && fs_on_erased(client, on_erased, bridge, &e);
  jlongArray out = ok ? env->NewLongArray(2) : nullptr;
  if (out == nullptr) {
    fs_client_free(client);
    delete bridge;
    if (!ok) throw_error(env, e);
    return nullptr;
  }
  const jlong handles[2] = {static_cast<jlong>(reinterpret_cast<intptr_t>(client)),
                            static_cast<jlong>(reinterpret_cast<intptr_t>(bridge))};
  env->SetLongArrayRegion(out, 0, 2, handles);
  return out;
}

JNIEXPORT void JNICALL Java_org_fieldsync_Client_nativeClose(JNIEnv* env, jclass, jlong handle) {
  fs_error e{};
  if (!fs_client_close(client_of(handle), &e)) throw_error(env, e);
}

JNIEXPORT void JNICALL Java_org_fieldsync_Client_nativeFree(JNIEnv* env, jclass, jlong handle,
                                                            jlong bridge_handle) {
  fs_client_free(client_of(handle));  // no callback runs after this: close joined the sync thread
  auto* bridge = reinterpret_cast<Bridge*>(static_cast<intptr_t>(bridge_handle));
  if (bridge->listener) env->DeleteGlobalRef(bridge->listener);
  delete bridge;
}

JNIEXPORT void JNICALL Java_org_fieldsync_Client_nativeSetListener(JNIEnv* env, jclass, jlong,
                                                                   jlong bridge_handle, jobject listener) {
  auto* bridge = reinterpret_cast<Bridge*>(static_cast<intptr_t>(bridge_handle));
  jobject ref = listener ? env->NewGlobalRef(listener) : nullptr;
  jobject old;
  {
    std::lock_guard lock(bridge->mu);
    old = bridge->listener;
    bridge->listener = ref;
  }
  if (old) env->DeleteGlobalRef(old);  // a callback running now holds its own local ref
}

JNIEXPORT jlong JNICALL Java_org_fieldsync_Client_nativeNode(JNIEnv* env, jclass, jlong handle) {
  fs_error e{};
  uint64_t node = 0;
  if (!fs_client_node(client_of(handle), &node, &e)) throw_error(env, e);
  return static_cast<jlong>(node);
}

JNIEXPORT jstring JNICALL Java_org_fieldsync_Client_nativeWrite(JNIEnv* env, jclass, jlong handle, jint op,
                                                                jstring a_, jstring b_, jstring c_) {
  fs_client* c = client_of(handle);
  const Utf8Arg a(env, a_), b(env, b_), x(env, c_);
  fs_error e{};
  char* out = nullptr;
  bool ok = false;
  switch (op) {  // Client.W_* constants
    case 1:
      ok = fs_create_account(c, a.get(), &out, &e);
      break;
    case 2:
      ok = fs_edit_account(c, a.get(), b.get(), &e);
      break;
    case 3:
      ok = fs_create_contact(c, a.get(), &out, &e);
      break;
    case 4:
      ok = fs_edit_contact(c, a.get(), b.get(), &e);
      break;
    case 5:
      ok = fs_check_in(c, a.get(), &out, &e);
      break;
    case 6:
      ok = fs_add_visit_note(c, a.get(), b.get(), &e);
      break;
    case 7:
      ok = fs_draft_order(c, a.get(), b.get(), x.get(), &out, &e);
      break;
    case 8:
      ok = fs_add_line(c, a.get(), b.get(), &out, &e);
      break;
    case 9:
      ok = fs_change_line(c, a.get(), b.get(), &e);
      break;
    case 10:
      ok = fs_remove_line(c, a.get(), &e);
      break;
    case 11:
      ok = fs_submit_order(c, a.get(), &e);
      break;
    case 12:
      ok = fs_create_event(c, a.get(), &out, &e);
      break;
    case 13:
      ok = fs_cancel_event(c, a.get(), &e);
      break;
    case 14:
      ok = fs_create_opportunity(c, a.get(), &out, &e);
      break;
    case 15:
      ok = fs_move_opportunity(c, a.get(), b.get(), &e);
      break;
    case 16:
      ok = fs_create_lead(c, a.get(), &out, &e);
      break;
    case 17:
      ok = fs_lead_action(c, a.get(), FS_LEAD_CONTACTED, nullptr, &e);
      break;
    case 18:
      ok = fs_lead_action(c, a.get(), FS_LEAD_QUALIFY, nullptr, &e);
      break;
    case 19:
      ok = fs_lead_action(c, a.get(), FS_LEAD_DISQUALIFY, b.get(), &e);
      break;
    case 20:
      ok = fs_lead_action(c, a.get(), FS_LEAD_NOTE, b.get(), &e);
      break;
    case 21:
      ok = fs_convert_lead(c, a.get(), b.get(), &out, &e);
      break;
    case 22:
      ok = fs_open_case(c, a.get(), &out, &e);
      break;
    case 23:
      ok = fs_case_action(c, a.get(), FS_CASE_TAKE, nullptr, &e);
      break;
    case 24:
      ok = fs_case_action(c, a.get(), FS_CASE_START, nullptr, &e);
      break;
    case 25:
      ok = fs_case_action(c, a.get(), FS_CASE_RESOLVE, b.get(), &e);
      break;
    case 26:
      ok = fs_case_action(c, a.get(), FS_CASE_CLOSE, nullptr, &e);
      break;
    case 27:
      ok = fs_case_action(c, a.get(), FS_CASE_REOPEN, nullptr, &e);
      break;
    case 28:
      ok = fs_case_action(c, a.get(), FS_CASE_DISPATCH, b.get(), &e);
      break;
    case 29:
      ok = fs_case_action(c, a.get(), FS_CASE_NOTE, b.get(), &e);
      break;
    case 30:
      ok = fs_register_asset(c, a.get(), &out, &e);
      break;
    case 31:
      ok = fs_create_task(c, a.get(), &out, &e);
      break;
    case 32:
      ok = fs_task_action(c, a.get(), FS_TASK_COMPLETE, &e);
      break;
    case 33:
      ok = fs_task_action(c, a.get(), FS_TASK_CANCEL, &e);
      break;
    case 34:
      ok = fs_task_action(c, a.get(), FS_TASK_REOPEN, &e);
      break;
    default:
      e.domain = FS_DOMAIN_API;
      e.code = FS_API_UNKNOWN_ENUM;
      std::strcpy(e.message, "unknown write operation");
      break;
  }
  return take_string(env, ok, out, e);
}

JNIEXPORT void JNICALL Java_org_fieldsync_Client_nativeCheckOut(JNIEnv* env, jclass, jlong handle,
                                                                jstring visit, jstring outcome,
                                                                jboolean has_at, jlong at_ms) {
  fs_error e{};
  const int64_t at = at_ms;
  if (!fs_check_out(client_of(handle), Utf8Arg(env, visit).get(), Utf8Arg(env, outcome).get(),
                    has_at ? &at : nullptr, &e))
    throw_error(env, e);
}

JNIEXPORT jstring JNICALL Java_org_fieldsync_Client_nativeMoveEvent(JNIEnv* env, jclass, jlong handle,
                                                                    jstring id, jlong start_ms,
                                                                    jlong end_ms) {
  fs_error e{};
  char* out = nullptr;
  const bool ok = fs_move_event(client_of(handle), Utf8Arg(env, id).get(), start_ms, end_ms, &out, &e);
  return take_string(env, ok, out, e);
}

JNIEXPORT jstring JNICALL Java_org_fieldsync_Client_nativeGet(JNIEnv* env, jclass, jlong handle, jint kind,
                                                              jstring id) {
  fs_error e{};
  char* out = nullptr;
  const bool ok = fs_get(client_of(handle), kind, Utf8Arg(env, id).get(), &out, &e);
  return take_string(env, ok, out, e);
}

JNIEXPORT jstring JNICALL Java_org_fieldsync_Client_nativeList(JNIEnv* env, jclass, jlong handle,
                                                               jint listing, jstring arg) {
  fs_error e{};
  char* out = nullptr;
  const bool ok = fs_list(client_of(handle), listing, Utf8Arg(env, arg).get(), &out, &e);
  return take_string(env, ok, out, e);
}

JNIEXPORT jstring JNICALL Java_org_fieldsync_Client_nativeAgenda(JNIEnv* env, jclass, jlong handle,
                                                                 jlong from_ms, jlong to_ms) {
  fs_error e{};
  char* out = nullptr;
  const bool ok = fs_agenda(client_of(handle), from_ms, to_ms, &out, &e);
  return take_string(env, ok, out, e);
}

JNIEXPORT jstring JNICALL Java_org_fieldsync_Client_nativeExport(JNIEnv* env, jclass, jlong handle) {
  fs_error e{};
  char* out = nullptr;
  const bool ok = fs_export_json(client_of(handle), &out, &e);
  return take_string(env, ok, out, e);
}

JNIEXPORT jintArray JNICALL Java_org_fieldsync_Client_nativeUnreadCounts(JNIEnv* env, jclass, jlong handle) {
  fs_error e{};
  uint32_t conflicts = 0, rejections = 0;
  if (!fs_unread_counts(client_of(handle), &conflicts, &rejections, &e)) {
    throw_error(env, e);
    return nullptr;
  }
  jintArray out = env->NewIntArray(2);
  if (out == nullptr) return nullptr;
  const jint v[2] = {static_cast<jint>(conflicts), static_cast<jint>(rejections)};
  env->SetIntArrayRegion(out, 0, 2, v);
  return out;
}

JNIEXPORT void JNICALL Java_org_fieldsync_Client_nativeMarkSeen(JNIEnv* env, jclass, jlong handle,
                                                                jboolean conflicts, jlong up_to) {
  fs_error e{};
  const bool ok = conflicts ? fs_mark_conflicts_seen(client_of(handle), up_to, &e)
                            : fs_mark_rejections_seen(client_of(handle), up_to, &e);
  if (!ok) throw_error(env, e);
}

JNIEXPORT void JNICALL Java_org_fieldsync_Client_nativeSync(JNIEnv* env, jclass, jlong handle, jint op,
                                                            jlong timeout_ms) {
  fs_error e{};
  bool ok = false;
  switch (op) {  // Client.SYNC_*
    case 1:
      ok = fs_sync_start(client_of(handle), &e);
      break;
    case 2:
      ok = fs_sync_stop(client_of(handle), &e);
      break;
    case 3:
      ok = fs_sync_now(client_of(handle), timeout_ms, &e);
      break;
    default:
      e.domain = FS_DOMAIN_API;
      e.code = FS_API_UNKNOWN_ENUM;
      std::strcpy(e.message, "unknown sync operation");
  }
  if (!ok) throw_error(env, e);
}

JNIEXPORT jobject JNICALL Java_org_fieldsync_Client_nativeSyncStatus(JNIEnv* env, jclass, jlong handle) {
  fs_error e{};
  fs_sync_status s{};
  if (!fs_sync_status_get(client_of(handle), &s, &e)) {
    throw_error(env, e);
    return nullptr;
  }
  return env->NewObject(g_status_class, g_status_ctor, static_cast<jint>(s.state),
                        static_cast<jboolean>(s.connected != 0), static_cast<jboolean>(s.running != 0),
                        static_cast<jlong>(s.pending_count), static_cast<jboolean>(s.has_last_synced != 0),
                        static_cast<jlong>(s.last_synced_at_ms), static_cast<jlong>(s.bootstrap_done),
                        static_cast<jlong>(s.bootstrap_total));
}

}  // extern "C"
