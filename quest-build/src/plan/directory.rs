//! The channel directory page of a sandbox ([`quest_abi::directory`]): the image stage
//! adds it as a payload at [`quest_abi::layout::DIRECTORY_GPA`], and the guest's channel
//! library looks its channels up there by name.

use super::types::{Plan, Role};
use quest_abi::directory::{directory_page, DirectoryEntry, ROLE_READER, ROLE_WRITER};
use zerocopy::FromZeros;

/// The directory page of sandbox `sandbox` ([`directory_page`]), listing its channels in
/// manifest order. Empty when the sandbox has no channels (it has no directory region
/// then, and [`super::encode_table`] leaves empty payloads out) or does not exist.
/// Channels beyond what one page holds are left out (validation rejects such a plan).
pub fn directory_bytes(plan: &Plan, sandbox: usize) -> Vec<u8> {
    let Some(sb) = plan.sandboxes.get(sandbox) else {
        return Vec::new();
    };
    if sb.channel_ends.is_empty() {
        return Vec::new();
    }
    let entries: Vec<DirectoryEntry> = sb
        .channel_ends
        .iter()
        .map(|end| {
            let mut e = DirectoryEntry::new_zeroed();
            if let Some(c) = plan.channels.get(end.channel) {
                e.name = quest_abi::name_field(&c.name).unwrap_or_default();
                e.data_size = c.data_size.into();
                e.ack_size = c.ack_size.into();
            }
            e.role = match end.role {
                Role::Writer => ROLE_WRITER,
                Role::Reader => ROLE_READER,
            }
            .into();
            e.channel = u32::try_from(end.channel).unwrap_or(u32::MAX).into();
            e.data_gpa = end.data_gpa.as_u64().into();
            e.ack_gpa = end.ack_gpa.as_u64().into();
            e
        })
        .collect();
    directory_page(&entries).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan, testing};
    use quest_abi::directory::{DirectoryHeader, DIRECTORY_MAGIC};
    use quest_abi::layout::DIRECTORY_SIZE;
    use zerocopy::FromBytes;

    #[test]
    fn directory_lists_each_sandboxs_channels_with_its_own_addresses() {
        let p = plan(&testing::pingpong());
        for (s, sb) in p.sandboxes.iter().enumerate() {
            let page = directory_bytes(&p, s);
            assert_eq!(page.len(), DIRECTORY_SIZE as usize);
            let (header, rest) = DirectoryHeader::read_from_prefix(&page).unwrap();
            assert_eq!(header.magic, DIRECTORY_MAGIC);
            assert_eq!(header.count.get(), 2);
            let (entries, _) = <[DirectoryEntry]>::ref_from_prefix_with_elems(rest, 2).unwrap();
            for (e, end) in entries.iter().zip(&sb.channel_ends) {
                let c = &p.channels[end.channel];
                assert_eq!(quest_abi::name_str(&e.name), Some(c.name.as_str()));
                assert_eq!(e.channel.get() as usize, end.channel);
                assert_eq!(e.data_gpa.get(), end.data_gpa.as_u64());
                assert_eq!(e.ack_gpa.get(), end.ack_gpa.as_u64());
                assert_eq!(e.data_size.get(), c.data_size);
                assert_eq!(e.ack_size.get(), c.ack_size);
                let want = if c.writer == s {
                    ROLE_WRITER
                } else {
                    ROLE_READER
                };
                assert_eq!(e.role.get(), want);
            }
        }
    }

    #[test]
    fn no_channels_no_directory() {
        let m = testing::manifest(
            2,
            64,
            &[testing::SandboxSpec::new(
                "a",
                crate::manifest::Runtime::Bare,
                &[0],
                4,
            )],
            &[],
        );
        let p = plan(&m);
        assert!(directory_bytes(&p, 0).is_empty());
        assert!(directory_bytes(&p, 9).is_empty());
    }
}
