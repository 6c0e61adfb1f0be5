using { l2sync.test as db } from '../db/schema';

service TestService @(path: '/odata/v4/test') {
  entity People as projection on db.People;
}

// modifiedAt is the ETag: If-Match with an older one answers 412
annotate TestService.People with {
  modifiedAt @odata.etag;
};
