package org.fieldsync;

/** What {@link Client#list} lists (fs_listing); the argument each needs is in fieldsync.h. */
public enum Listing {
  ACCOUNTS_BY_PREFIX(1),
  ACCOUNTS_IN_TERRITORY(2),
  VISITS_OF_ACCOUNT(3),
  TODAYS_VISITS(4),
  OPEN_ORDERS(5),
  AGENDA_TODAY(6),
  AGENDA_WEEK(7),
  PIPELINE(8),
  CONFLICTS(9),
  REJECTIONS(10),
  CONFLICT_INBOX(11),
  REJECTION_INBOX(12),
  MY_LEADS(13),
  MY_CASES(14),
  OPEN_CASES_OF_ACCOUNT(15),
  ASSETS_OF_ACCOUNT(16),
  OPEN_TASKS(17),
  OVERDUE_TASKS(18);

  final int value;

  Listing(int value) {
    this.value = value;
  }
}
