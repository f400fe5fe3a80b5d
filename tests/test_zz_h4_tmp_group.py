import time
import pytest
G = pytest.mark.xdist_group("g1")
@G
def test_a(): time.sleep(0.5)
@G
def test_b(): time.sleep(0.5)
@pytest.mark.parametrize("i", range(4))
def test_d(i): time.sleep(0.2)
