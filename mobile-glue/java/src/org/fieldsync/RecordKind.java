package org.fieldsync;

/** What {@link Client#get} reads (fs_record_kind). */
public enum RecordKind {
  ACCOUNT(1),
  VISIT(2),
  ORDER(3),
  EVENT(4),
  OPPORTUNITY(5),
  LEAD(6),
  SERVICE_CASE(7),
  ASSET(8),
  TASK(9);

  final int value;

  RecordKind(int value) {
    this.value = value;
  }
}
