// The benchmark's small docs, the same shape as bench/common.py small_doc(i).
'use strict';
const FILLER = 'lorem ipsum dolor sit amet '.repeat(8).slice(0, 160);
function smallDoc(i) {
  return {_id: 'doc' + String(i).padStart(8, '0'), type: 'todo', n: i, done: i % 3 === 0,
          title: 'item number ' + i, tags: ['a', 'b', String(i % 17)], text: FILLER};
}
module.exports = {smallDoc};
