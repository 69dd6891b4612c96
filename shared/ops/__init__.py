"""Operations over both stores: catalog and enrollment changes, erasure, teacher views."""
