//! Keys of `famfs-trace top`: a pure mapping from a crossterm key event (and whether the filter is being
//! typed) to an [`Action`]. Reading events from the terminal is the caller's job.
//!
//! Normal mode: `q`/Esc quit, Ctrl-C quit, `s` next sort key, `/` edit the filter, `p` pause, arrows or
//! `j`/`k` move the selection (PgUp/PgDn, Home/End, `g`/`G`), Enter opens the selected file's detail
//! (the processes behind it; Esc, Enter or Backspace return, `q` quits), `?` help. Filter mode: characters edit,
//! Backspace deletes, Enter applies, Esc cancels.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::{Action, Mode};

/// The action for `key` in `mode`; `None` for keys that do nothing (and for key releases).
pub fn action_for(key: &KeyEvent, mode: &Mode) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    match mode {
        Mode::Filter(_) => match key.code {
            KeyCode::Enter => Some(Action::FilterApply),
            KeyCode::Esc => Some(Action::FilterCancel),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                Some(Action::FilterChar(c))
            }
            _ => None,
        },
        Mode::Detail(_) => match key.code {
            KeyCode::Esc | KeyCode::Enter | KeyCode::Backspace => Some(Action::CloseDetail),
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Char('p') | KeyCode::Char(' ') => Some(Action::TogglePause),
            KeyCode::Char('?') | KeyCode::F(1) => Some(Action::ToggleHelp),
            _ => None,
        },
        Mode::Normal => match key.code {
            KeyCode::Enter => Some(Action::OpenDetail),
            KeyCode::Char('q') | KeyCode::Esc => Some(Action::Quit),
            KeyCode::Char('s') => Some(Action::CycleSort),
            KeyCode::Char('/') => Some(Action::StartFilter),
            KeyCode::Char('p') | KeyCode::Char(' ') => Some(Action::TogglePause),
            KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
            KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
            KeyCode::PageUp => Some(Action::PageUp),
            KeyCode::PageDown => Some(Action::PageDown),
            KeyCode::Home | KeyCode::Char('g') => Some(Action::Home),
            KeyCode::End | KeyCode::Char('G') => Some(Action::End),
            KeyCode::Char('?') | KeyCode::F(1) => Some(Action::ToggleHelp),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn normal_mode_keys() {
        let n = Mode::Normal;
        assert_eq!(action_for(&k(KeyCode::Char('q')), &n), Some(Action::Quit));
        assert_eq!(action_for(&k(KeyCode::Esc), &n), Some(Action::Quit));
        assert_eq!(
            action_for(
                &KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
                &n
            ),
            Some(Action::Quit)
        );
        assert_eq!(
            action_for(&k(KeyCode::Char('s')), &n),
            Some(Action::CycleSort)
        );
        assert_eq!(
            action_for(&k(KeyCode::Char('/')), &n),
            Some(Action::StartFilter)
        );
        assert_eq!(
            action_for(&k(KeyCode::Char('p')), &n),
            Some(Action::TogglePause)
        );
        assert_eq!(action_for(&k(KeyCode::Char('j')), &n), Some(Action::Down));
        assert_eq!(action_for(&k(KeyCode::Up), &n), Some(Action::Up));
        assert_eq!(
            action_for(&k(KeyCode::Char('?')), &n),
            Some(Action::ToggleHelp)
        );
        assert_eq!(action_for(&k(KeyCode::Char('x')), &n), None);
        assert_eq!(action_for(&k(KeyCode::Enter), &n), Some(Action::OpenDetail));
        let d = Mode::Detail("a".into());
        assert_eq!(action_for(&k(KeyCode::Esc), &d), Some(Action::CloseDetail));
        assert_eq!(action_for(&k(KeyCode::Char('q')), &d), Some(Action::Quit));
        assert_eq!(action_for(&k(KeyCode::Char('j')), &d), None);
        let mut release = k(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(action_for(&release, &n), None);
    }

    #[test]
    fn filter_mode_keys_type_text() {
        let f = Mode::Filter("ab".into());
        assert_eq!(
            action_for(&k(KeyCode::Char('q')), &f),
            Some(Action::FilterChar('q'))
        );
        assert_eq!(
            action_for(&k(KeyCode::Char('s')), &f),
            Some(Action::FilterChar('s'))
        );
        assert_eq!(
            action_for(&k(KeyCode::Enter), &f),
            Some(Action::FilterApply)
        );
        assert_eq!(action_for(&k(KeyCode::Esc), &f), Some(Action::FilterCancel));
        assert_eq!(
            action_for(&k(KeyCode::Backspace), &f),
            Some(Action::FilterBackspace)
        );
    }
}
