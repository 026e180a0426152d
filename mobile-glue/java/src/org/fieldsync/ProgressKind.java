package org.fieldsync;

public enum ProgressKind {
  BOOTSTRAP(1),
  PUSH(2);

  final int value;

  ProgressKind(int value) {
    this.value = value;
  }

  static ProgressKind of(int value) {
    return value == 1 ? BOOTSTRAP : PUSH;
  }
}
