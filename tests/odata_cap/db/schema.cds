namespace l2sync.test;

using { cuid, managed } from '@sap/cds/common';

// A plain entity with a server-made UUID key, two text fields and CAP's managed timestamps
// (read-only to clients; modifiedAt is the watermark and the ETag).
entity People : cuid, managed {
  name : String(100);
  city : String(100);
  age  : Integer;
}
