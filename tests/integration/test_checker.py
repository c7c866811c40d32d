"""The delivery checker (checker.py) on made-up histories: it must find what it is for
(a missing position, a duplicate, an unannounced new epoch, a short ending, data that is
not what was acknowledged), and excuse exactly what `recovered:false` reported."""
import unittest

from checker import Recorder, check


def history(n, epoch="e1", channel="/c", start=1):
    r = Recorder()
    for s in range(start, start + n):
        r.ack(channel, f"{epoch}.{s}", f"k{s}")
    return r


class CheckerTest(unittest.TestCase):
    def test_a_clean_history_passes(self):
        r = history(5)
        r.subscribed("s", "/c", "e1.0", True, False)
        for s in range(1, 6):
            r.message("s", "/c", f"e1.{s}", f"k{s}")
        rep = check(r)
        self.assertTrue(rep.ok, rep)
        self.assertEqual((rep.published, rep.delivered), (5, 5))

    def test_a_channel_born_after_its_absent_position_follows_it(self):
        r = history(2)
        r.subscribed("s", "/c", "zabc000000.0", True, False)
        r.message("s", "/c", "e1.1", "k1")
        r.message("s", "/c", "e1.2", "k2")
        self.assertTrue(check(r).ok)
        r2 = history(2)
        r2.subscribed("s", "/c", "zabc000000.0", True, False)
        r2.message("s", "/c", "e1.2", "k2")
        self.assertEqual(check(r2).missing_acked, 1)

    def test_a_missing_position_is_a_silent_gap(self):
        r = history(5)
        r.subscribed("s", "/c", "e1.0", True, False)
        for s in (1, 2, 4, 5):
            r.message("s", "/c", f"e1.{s}", f"k{s}")
        rep = check(r)
        self.assertFalse(rep.ok)
        self.assertEqual((rep.silent_gaps, rep.missing_acked, rep.duplicates), (1, 1, 0))
        self.assertIn("e1.3", str(rep))

    def test_a_missing_tail_is_a_silent_gap(self):
        r = history(5)
        r.subscribed("s", "/c", "e1.0", True, False)
        for s in (1, 2, 3):
            r.message("s", "/c", f"e1.{s}", f"k{s}")
        rep = check(r)
        self.assertEqual((rep.silent_gaps, rep.missing_acked), (2, 2))

    def test_a_duplicate_is_found_even_across_a_reconnect(self):
        r = history(4)
        r.subscribed("s", "/c", "e1.0", True, False)
        for s in (1, 2, 3):
            r.message("s", "/c", f"e1.{s}", f"k{s}")
        r.reconnect("s", "/c", "closed")
        r.subscribed("s", "/c", "e1.4", True, True)
        r.message("s", "/c", "e1.3", "k3")  # the resume sent 3 again
        r.message("s", "/c", "e1.4", "k4")
        rep = check(r)
        self.assertFalse(rep.ok)
        self.assertEqual((rep.duplicates, rep.silent_gaps, rep.resumed, rep.reconnects), (1, 0, 1, 1))

    def test_recovered_false_excuses_what_it_reports_and_no_more(self):
        r = history(6)
        r.subscribed("s", "/c", "e1.0", True, False)
        r.message("s", "/c", "e1.1", "k1")
        r.subscribed("s", "/c", "e1.4", False, True)  # 2..4 reported lost
        r.message("s", "/c", "e1.5", "k5")
        r.message("s", "/c", "e1.6", "k6")
        rep = check(r)
        self.assertTrue(rep.ok, rep)
        self.assertEqual((rep.recovered_false, rep.recovered_false_same_epoch), (1, 1))
        # The same, with 5 missing after the report: found.
        r2 = history(6)
        r2.subscribed("s", "/c", "e1.0", True, False)
        r2.message("s", "/c", "e1.1", "k1")
        r2.subscribed("s", "/c", "e1.4", False, True)
        r2.message("s", "/c", "e1.6", "k6")
        rep = check(r2)
        self.assertEqual((rep.silent_gaps, rep.missing_acked), (1, 1))

    def test_a_new_epoch_needs_recovered_false(self):
        r = history(2)
        for s in (1, 2):
            r.ack("/c", f"e2.{s}", f"n{s}")
        r.subscribed("s", "/c", "e1.0", True, False)
        r.message("s", "/c", "e1.1", "k1")
        r.message("s", "/c", "e1.2", "k2")
        r.message("s", "/c", "e2.2", "n2")  # straight into the new epoch, e2.1 lost
        rep = check(r)
        self.assertFalse(rep.ok)
        self.assertEqual(rep.missing_acked, 1)
        told = history(2)
        for s in (1, 2):
            told.ack("/c", f"e2.{s}", f"n{s}")
        told.subscribed("t", "/c", "e1.0", True, False)
        told.message("t", "/c", "e1.1", "k1")
        told.message("t", "/c", "e1.2", "k2")
        told.subscribed("t", "/c", "e2.1", False, True)
        told.message("t", "/c", "e2.2", "n2")
        rep = check(told)
        self.assertTrue(rep.ok, rep)
        self.assertEqual(rep.recovered_false_new_epoch, 1)

    def test_never_told_of_a_new_epoch(self):
        r = history(2)
        r.ack("/c", "e2.1", "n1")
        r.subscribed("s", "/c", "e1.0", True, False)
        r.message("s", "/c", "e1.1", "k1")
        r.message("s", "/c", "e1.2", "k2")
        rep = check(r)
        self.assertEqual((rep.silent_gaps, rep.missing_acked), (1, 1))

    def test_wrong_data_and_a_reused_position(self):
        r = history(2)
        r.ack("/c", "e1.2", "other")  # a bus that went back and numbered anew
        r.subscribed("s", "/c", "e1.0", True, False)
        r.message("s", "/c", "e1.1", "k9")
        r.message("s", "/c", "e1.2", "other")
        rep = check(r)
        self.assertFalse(rep.ok)
        self.assertEqual((rep.reused_positions, rep.wrong_data), (1, 1))


if __name__ == "__main__":
    unittest.main()
